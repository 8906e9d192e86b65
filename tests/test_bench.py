"""Every benchmark under bench/ has a small run here, so none can break unnoticed (one did)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_turn_benchmark_runs_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--smoke"], capture_output=True, text=True, timeout=170
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 10 |") or line.startswith("| 200 |")]
    assert len(rows) == 2, done.stdout
    assert "time to prompt: memchat" in done.stdout


def test_the_startup_benchmark_runs_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "startup.py"), "--smoke"], capture_output=True, text=True, timeout=170
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for measure in ("time to prompt (s)", "first reply, typed at once (s)", "one-shot piped turn, CPU (s)"):
        row = next((line for line in done.stdout.splitlines() if line.startswith(f"| {measure} |")), None)
        assert row is not None, done.stdout
        ratio = float(row.rstrip(" |").rsplit("|", 1)[1])
        assert ratio > 0


def test_the_recall_benchmark_runs_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recall.py"), "--smoke", "--embeddings", "fake"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split(" | ")[2:7] for line in done.stdout.splitlines() if line.startswith("| sqlite | 600 |")]
    assert [row[0] for row in rows] == ["summary only", "words", "words + meaning (fake-embedder)"], done.stdout
    # The run itself checks the evidence: with search every planted fact's exchange reaches the request,
    # and only search by meaning finds the facts asked about in other words (the oldest ones, out of the window).
    words, meaning = rows[1], rows[2]
    assert words[1:3] == ["100% (4/4)", "100% (4/4)"] and words[4] == "100% (4/4)", done.stdout
    assert meaning[1:] == ["100% (4/4)", "100% (4/4)", "100% (3/3)", "100% (4/4)"], done.stdout
    assert words[3] != "100% (3/3)", done.stdout
