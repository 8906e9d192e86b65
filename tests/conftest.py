"""The fixtures every test may ask for (the test server, memchat run as a user, each store in turn) and the run's hooks.

What they are made of is in ``support.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from fake_openai import FakeOpenAI
from support import AGENT, STORES, Memchat, clean_env, drop_redis_keys, drop_test_database, fresh_store

# The chat page's fixtures (web, browser, page), for every module that drives it.
pytest_plugins = ["web_page"]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def memchat(tmp_path: Path, server: FakeOpenAI) -> Memchat:
    work = tmp_path / "work"
    work.mkdir()
    return Memchat(work, clean_env(tmp_path, OPENAI_BASE_URL=server.url))


@pytest.fixture
def spawn(memchat: Memchat) -> Iterator[object]:
    """Starts ``python agent.py ARGS`` in a pseudo-terminal, as a person runs it; closed at the end."""
    children: list[pexpect.spawn] = []

    def start(*args: str, **env: str) -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            [str(AGENT), *args],
            cwd=str(memchat.cwd),
            # The pty answers no cursor-position requests; a real terminal does.
            env={**memchat.env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **env},
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 200),
        )
        children.append(child)
        return child

    yield start
    for child in children:
        child.close(force=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave the servers as they were found."""
    with contextlib.suppress(Exception):
        drop_test_database()
    with contextlib.suppress(Exception):
        drop_redis_keys()


@pytest.fixture(params=STORES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn, empty: the conformance suite runs once per store."""
    return fresh_store(request.param, tmp_path)


# The longest tests (tens of seconds each, mostly processes loading the SDK) start first, so the
# parallel run does not end with one worker busy on them while the others are idle.
LONGEST_FIRST = (
    "test_eight_processes_taking_turns_on_one_memory_lose_nothing",
    "test_sigkill_at_random_moments_never_loses_a_finished_turn",
    "test_the_sdks_own_session_tests_pass_on_each_store",
    "test_sigkill_while_writing_never_leaves_half_a_turn",
    "test_a_fact_told_in_one_run_is_known_in_the_next_and_clear_forgets_it",
    "test_random_lines_on_a_pipe_are_handled_or_refused_in_one_line",
    "test_the_api_key_never_appears_in_any_output_or_file",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = getattr(item, "originalname", item.name)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: everything else keeps its order


# Figures tests report (concurrency, crash trials...), printed at the end of the run. Each test process
# (each xdist worker) appends to a file of its own in a folder the main process made and reads back.
FIGURES_DIR = "MEMCHAT_TEST_FIGURES"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the main process; workers inherit the folder
        import tempfile

        os.environ[FIGURES_DIR] = tempfile.mkdtemp(prefix="memchat-figures-")


@pytest.fixture
def report() -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    if lines:
        with (Path(os.environ[FIGURES_DIR]) / f"{os.getpid()}.txt").open("a") as out:
            out.writelines(line + "\n" for line in lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    folder = Path(os.environ.get(FIGURES_DIR, ""))
    lines = sorted(line for path in folder.glob("*.txt") for line in path.read_text().splitlines())
    if lines:
        terminalreporter.section("memchat figures")
        for line in lines:
            terminalreporter.write_line(line)
