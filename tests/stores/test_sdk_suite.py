"""The Agents SDK's own session tests, run against memchat's stores, as a plugin is tested against its host's suite.

``tests/sdk_suite/fetch`` (run by ``.ci/run``, or by hand) puts the installed
SDK version's source distribution in ``.sdk-suite/``; the adapter plugin
``tests/sdk_suite/memchat_sdk_adapter.py`` makes every session those tests
construct a memchat memory. Outside CI a missing download skips with the
command to run; under CI it fails.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import POSTGRES_URL, REDIS_PREFIX, REDIS_SERVER, ROOT, STORES, fresh_store

sys.path.insert(0, str(ROOT / "tests" / "sdk_suite"))
from memchat_sdk_adapter import FILES

SDK_SOURCE = ROOT / ".sdk-suite" / f"openai_agents-{importlib.metadata.version('openai-agents')}"
# What a run of each store passed when this was written: fewer means a check stopped being made.
AT_LEAST = {"sqlite": 370, "postgres": 26, "redis": 27}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", STORES)
def test_the_sdks_own_session_tests_pass_on_each_store(kind: str, tmp_path: Path, report: list[str]) -> None:
    if not (SDK_SOURCE / "tests").is_dir():
        message = f"the SDK's tests are not fetched: run bash tests/sdk_suite/fetch (looked in {SDK_SOURCE})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    fresh_store(kind, tmp_path)  # this run's own database and key prefix exist, empty
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "sdk_suite")]),
        "MEMCHAT_SDK_STORE": kind,
        "MEMCHAT_SDK_POSTGRES": POSTGRES_URL,
        "MEMCHAT_SDK_REDIS": REDIS_SERVER,
        "MEMCHAT_SDK_RUN": f"{REDIS_PREFIX}:sdk",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "memchat_sdk_adapter",
            "--timeout",
            "60",
            *FILES[kind],
        ],
        cwd=SDK_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    report.append(f"the SDK's session tests on {kind}: {summary}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= AT_LEAST[kind], summary
