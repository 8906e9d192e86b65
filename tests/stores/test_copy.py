"""``memchat copy``: moving house between stores, safe to run again."""

from __future__ import annotations

import pytest

from memchat.context.budget import TokenEstimator, build_context
from memchat.stores.base import END
from memchat.stores.protocol import Summary
from memchat.stores.transfer import copy_store
from support import Memchat, opened, stored_items


def test_a_file_moves_to_another_store_in_one_command_and_is_remembered_there(memchat: Memchat, location: str) -> None:
    memchat("--user", "alice", input="my name is Alice\n")
    memchat("--user", "bob", input="my name is Bob\n")
    moved = memchat("copy", "--from", "conversion.db", "--to", location)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines() == ["alice: copied 2 messages", "bob: copied 2 messages"]
    asked = memchat("--db", location, "--user", "alice", input="what's my name?\n")
    assert asked.stdout.strip() == "Your name is Alice."


def test_copying_twice_adds_nothing_and_copying_later_adds_only_the_new_turns(memchat: Memchat, location: str) -> None:
    memchat("--user", "alice", input="my name is Alice\n")
    assert memchat("copy", "--from", "conversion.db", "--to", location).returncode == 0
    again = memchat("copy", "--from", "conversion.db", "--to", location)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["alice: already up to date"]
    assert len(stored_items(location, "alice")) == 2
    memchat("--user", "alice", input="I like tea\n")
    later = memchat("copy", "--from", "conversion.db", "--to", location)
    assert later.stdout.splitlines() == ["alice: copied 2 messages"]
    assert stored_items(location, "alice") == stored_items(str(memchat.db), "alice") != []


def test_copy_of_one_user_leaves_the_others_behind(memchat: Memchat, location: str) -> None:
    memchat("--user", "alice", input="hi\n")
    memchat("--user", "bob", input="hi\n")
    moved = memchat("copy", "--from", "conversion.db", "--to", location, "--user", "bob")
    assert moved.stdout.splitlines() == ["bob: copied 2 messages"]
    assert stored_items(location, "alice") == []


def test_a_destination_holding_a_different_conversation_is_left_alone(memchat: Memchat, location: str) -> None:
    memchat("--user", "alice", input="my name is Alice\n")
    memchat("--db", location, "--user", "alice", input="my name is Zed\n")
    before = stored_items(location, "alice")
    refused = memchat("copy", "--from", "conversion.db", "--to", location)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: alice: not copied:")
    assert "--clear" in refused.stderr
    assert stored_items(location, "alice") == before


def test_a_missing_source_file_is_an_error_and_is_not_created(memchat: Memchat, location: str) -> None:
    run = memchat("copy", "--from", "nothing-here.db", "--to", location)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "does not exist" in run.stderr
    assert not (memchat.cwd / "nothing-here.db").exists()


@pytest.mark.anyio
async def test_the_summary_comes_along_and_covers_the_same_turns(location: str, tmp_path: object) -> None:
    source_db = f"{tmp_path}/source.db"
    async with opened(source_db) as source:
        memory = source.memory("alice")
        for n in range(6):
            await memory.add_items([{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}])
        turns = [turn async for turn in memory.turns_forward(0, END)]
        await memory.save_summary(Summary("Alice asked q0 to q2.", turns[2].end))
        async with opened(location) as target:
            await copy_store(source, target)
            await copy_store(source, target)
            copied = target.memory("alice")
            mine = await build_context(memory, 10_000, TokenEstimator())
            theirs = await build_context(copied, 10_000, TokenEstimator())
            assert theirs.summary is not None and theirs.summary.text == "Alice asked q0 to q2."
            assert theirs.items == mine.items == [item for turn in turns[3:] for item in turn.items]
