"""Every benchmark under bench/ has a small run here, so none can break unnoticed (one did)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT


def bench(script: str, *args: str) -> str:
    """What ``bench/SCRIPT`` printed on a small run; the run must succeed."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=170
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_turn_benchmark_runs_and_prints_its_table() -> None:
    out = bench("bench.py", "--smoke")
    rows = [line for line in out.splitlines() if line.startswith("| 10 |") or line.startswith("| 200 |")]
    assert len(rows) == 2, out
    assert "time to prompt: memchat" in out


def test_the_startup_benchmark_runs_and_prints_its_table() -> None:
    out = bench("startup.py", "--smoke")
    for measure in ("time to prompt (s)", "first reply, typed at once (s)", "one-shot piped turn, CPU (s)"):
        row = next((line for line in out.splitlines() if line.startswith(f"| {measure} |")), None)
        assert row is not None, out
        cells = [cell.strip() for cell in row.strip("| ").split("|")]
        (memchat_median, memchat_p95), (plain_median, plain_p95) = (
            map(float, cell.split(" / ")) for cell in cells[1:3]
        )
        # Each column is a real measurement, and the ratio is the one its medians make.
        assert 0 < memchat_median <= memchat_p95 and 0 < plain_median <= plain_p95, row
        assert float(cells[3]) == pytest.approx(memchat_median / plain_median, abs=0.011), row


def test_the_recall_benchmark_runs_and_prints_its_table() -> None:
    out = bench("recall.py", "--smoke", "--embeddings", "fake")
    rows = [line.split(" | ")[2:7] for line in out.splitlines() if line.startswith("| sqlite | 600 |")]
    assert [row[0] for row in rows] == ["summary only", "words", "words + meaning (fake-embedder)"], out
    # The run itself checks the evidence: with search every planted fact's exchange reaches the request,
    # and only search by meaning finds the facts asked about in other words (the oldest ones, out of the window).
    words, meaning = rows[1], rows[2]
    assert words[1:3] == ["100% (4/4)", "100% (4/4)"] and words[4] == "100% (4/4)", out
    assert meaning[1:] == ["100% (4/4)", "100% (4/4)", "100% (3/3)", "100% (4/4)"], out
    assert words[3] != "100% (3/3)", out
    # The build less the question's embedding is timed apart: less than the whole build, never nothing.
    cells = next(line.split(" | ") for line in out.splitlines() if line.startswith("| sqlite | 600 | words + meaning"))
    whole, less = (float(cell.split(" / ")[0]) for cell in (cells[-2], cells[-1].rstrip(" |")))
    assert 0 < less < whole, out


def locomo_shaped(path: Path) -> Path:
    """A small conversation in LoCoMo's format (the real data's licence keeps it out of this repository)."""
    turns = [
        ("Ann", "Hi Bo! I went to a pottery class yesterday and made a blue bowl."),
        ("Bo", "Hey Ann, that sounds fun. I adopted a greyhound called Biscuit last week."),
        ("Ann", "A greyhound! Do they need long walks?"),
        ("Bo", "Not really, Biscuit sleeps most of the day on the sofa."),
    ]
    later = [
        ("Ann", "I finished my nursing exams at last."),
        ("Bo", "Congratulations! We drove to Whitby for fish and chips on Saturday."),
        ("Ann", "Whitby is lovely in spring."),
        ("Bo", "It was windy, but Biscuit loved the beach."),
    ]
    session = lambda n, said: [  # noqa: E731 - a table's row builder
        {"speaker": who, "dia_id": f"D{n}:{i}", "text": text} for i, (who, text) in enumerate(said, start=1)
    ]
    data = {
        "speaker_a": "Ann",
        "speaker_b": "Bo",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": session(1, turns)
        + session(1, [(who, f"filler {n}: tea and rain") for n, who in enumerate("AB" * 30)])[4:],
        "session_2_date_time": "10:00 am on 9 June, 2023",
        "session_2": session(2, later),
        "qa": [
            {"question": "What is Bo's dog called?", "answer": "Biscuit", "evidence": ["D1:2"], "category": 4},
            {
                "question": "When did Ann go to a pottery class?",
                "answer": "7 May 2023",
                "evidence": ["D1:1"],
                "category": 2,
            },
            {"question": "Where did Bo take Biscuit?", "answer": "Whitby", "evidence": ["D1:2", "D2:4"], "category": 1},
            {"question": "What did Bo bake?", "adversarial_answer": "bread", "evidence": ["D1:3"], "category": 5},
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_the_locomo_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    conversation = str(locomo_shaped(tmp_path / "1.json"))
    outcomes = tmp_path / "outcomes.jsonl"
    out = bench("locomo.py", conversation, "--smoke", "--embeddings", "fake", "--per-question", str(outcomes))
    assert "1 conversations, 64 messages, 1 multi-hop, 1 temporal, 1 single-hop, 1 adversarial questions" in out
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ")[2] for line in out.splitlines() if "%" in line}
    for budget in ("| 2,000", "| 8,000"):
        for label in ("memchat, words", "memchat, words + meaning", "baseline: BM25", "baseline: nearest by meaning"):
            assert (budget, label) in rows, out
        # Every planted fact is found by its words in a conversation this small.
        assert rows[(budget, "memchat, words")] == "**100.0%**", out
    # Each question's outcome in each row, to compare two runs question by question.
    lines = [json.loads(line) for line in outcomes.read_text().splitlines()]
    dog = [line for line in lines if line["question"] == "What is Bo's dog called?"]
    assert len(dog) == 2 * 6 and all(line["found"] == [True] for line in dog if line["recall"] == "memchat, words")


def test_the_vector_scale_benchmark_runs_and_prints_its_table() -> None:
    out = bench("vectors.py", "--smoke", "--stores", "sqlite")
    cells = next(line for line in out.splitlines() if line.startswith("| sqlite | 3,000 |")).split(" | ")
    # Searched in the store, through its graph, the true nearest 10 are found (the bar: 95%); the
    # times are figures, never judged here.
    assert float(cells[6].rstrip("%")) >= 95, out
    assert float(cells[2]) > 0 and float(cells[4]) > 0, out
    assert float(cells[12]) > 0, out  # the graph's size


def test_the_vector_scale_benchmark_runs_on_postgresql_and_names_its_shared_buffers() -> None:
    out = bench("vectors.py", "--smoke", "--stores", "postgres")
    line = next(line for line in out.splitlines() if line.startswith("| postgres (shared_buffers "))
    assert float(line.split(" | ")[6].rstrip("%")) >= 95, out


def test_the_vector_scale_benchmark_can_keep_what_it_planted_for_the_next_run(tmp_path: Path) -> None:
    runs = [bench("vectors.py", "--smoke", "--stores", "sqlite", "--keep", str(tmp_path)) for _ in range(2)]
    first, second = (next(line for line in out.splitlines() if line.startswith("| sqlite |")) for out in runs)
    planted = tmp_path / "sqlite-3000.db"
    # The second run searched the same file, planted once: the same truth, the same planting time.
    assert planted.exists() and (tmp_path / "sqlite-3000.truth.json").exists()
    assert first.split(" | ")[-1] == second.split(" | ")[-1], runs
    assert float(second.split(" | ")[6].rstrip("%")) >= 95, runs


def test_the_saved_memories_benchmark_runs_and_prints_its_table() -> None:
    out = bench("memories.py", "--smoke")
    rows = dict(line.strip("| ").split(" | ") for line in out.splitlines()[2:] if line.startswith("| "))
    # Six facts told, three changed: at the default budget every request carries each newest value, none an old one.
    assert rows["saved by the model"] == "6" and rows["updated by the model"] == "3", out
    assert rows["requests with the newest value"] == "6 of 6" and rows["requests with an old value"] == "0 of 6", out
    assert rows["requests within the budget"] == "6 of 6", out
    assert float(rows["pinned share of the budget, most"].rstrip("%")) <= 10, out
    assert rows["requests after a turn (no tools)"] == "0", out  # the model saved with its tools


def test_the_saved_memories_benchmark_measures_the_request_after_each_turn_without_tools() -> None:
    out = bench("memories.py", "--smoke", "--no-tools")
    rows = dict(line.strip("| ").split(" | ") for line in out.splitlines()[2:] if line.startswith("| "))
    assert rows["saved by the model"] == "6" and rows["requests with the newest value"] == "6 of 6", out
    assert rows["requests after a turn (no tools)"] == rows["chat requests"] == "6", out
    assert int(rows["tokens of one, most"]) > 0, out
