"""Saved memories: lasting facts the model keeps about the person, pinned in every request, seen and corrected."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from fake_openai import FakeOpenAI
from memchat.context import saved
from memchat.context.budget import TokenEstimator
from memchat.stores import open_store
from memchat.stores.protocol import SavedMemory
from support import Memchat, opened


def system_text(server: FakeOpenAI) -> str:
    """The instructions of the last chat request the server received."""
    body: dict[str, Any] = [r for r in server.requests if r.path.endswith("/chat/completions")][-1].body
    return str(body["messages"][0]["content"])


def tool_names(server: FakeOpenAI) -> set[str]:
    body = [r for r in server.requests if r.path.endswith("/chat/completions")][-1].body
    return {tool["function"]["name"] for tool in body.get("tools") or []}


def tell(tool: str, **arguments: Any) -> str:
    return f"[[tool:{tool}:{json.dumps(arguments)}]]"


def test_every_store_keeps_saved_memories_per_user_and_clear_removes_them(location: str) -> None:
    async def run() -> None:
        async with opened(location) as store:
            ann, bob = store.memory("ann"), store.memory("bob")
            assert isinstance(ann, SavedMemory)
            assert await saved.change(ann, [saved.Change(0, "is vegetarian")]) == ["saved: is vegetarian"]
            assert [fact.text for fact in await saved.read(ann)] == ["is vegetarian"]
            assert await saved.read(bob) == []  # another user's are never seen
            # A write names the version it read: a stale one changes nothing.
            text, version = await ann.saved_memories()
            assert await ann.save_memories(text, version - 1) is False
            await ann.clear_session()
            assert await saved.read(ann) == [] and await ann.saved_memories() == ("", 0)

    asyncio.run(run())


def test_two_processes_saving_at_once_lose_nothing(location: str) -> None:
    async def writer(name: str) -> None:
        async with opened(location) as store:
            for n in range(8):
                await saved.change(store.memory("ann"), [saved.Change(0, f"{name} fact {n}")])

    async def run() -> list[str]:
        await asyncio.gather(writer("left"), writer("right"))
        async with opened(location) as store:
            return [fact.text for fact in await saved.read(store.memory("ann"))]

    facts = asyncio.run(run())
    assert sorted(facts) == sorted(f"{side} fact {n}" for side in ("left", "right") for n in range(8))


def test_saved_memories_are_encrypted_at_rest(tmp_path: Path) -> None:
    location = str(tmp_path / "sealed.db")

    async def run() -> list[str]:
        store = await open_store(location, encryption_key="a long passphrase here")
        try:
            await saved.change(store.memory("ann"), [saved.Change(0, "allergic to hazelnuts")])
            return [fact.text for fact in await saved.read(store.memory("ann"))]
        finally:
            await store.close()

    assert asyncio.run(run()) == ["allergic to hazelnuts"]
    with sqlite3.connect(location) as conn:
        dump = "\n".join(conn.iterdump())
    assert "hazelnut" not in dump


def test_a_fact_the_model_saves_is_pinned_in_every_later_request(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(input=f"I never eat meat {tell('remember', fact='is vegetarian')}\nsuggest a dinner\n")
    assert run.returncode == 0, run.stderr
    assert "saved: is vegetarian" in run.stderr.splitlines()
    assert {"remember", "forget_memory", "search_memory"} <= tool_names(server)
    assert "1. [" in system_text(server) and "] is vegetarian" in system_text(server)
    # A new process knows it too: it is in the store, not the conversation window.
    memchat(input="what should I cook?\n")
    assert "is vegetarian" in system_text(server)


def test_an_update_replaces_the_old_value_in_every_later_request(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input=f"I live in Leeds {tell('remember', fact='lives in Leeds')}\n")
    run = memchat(input=f"I moved {tell('remember', fact='lives in Lyon', replaces=1)}\nplan my Saturday\n")
    assert "updated: lives in Lyon" in run.stderr.splitlines()
    assert "lives in Lyon" in system_text(server) and "Leeds" not in system_text(server)


def test_the_model_cannot_change_a_memory_that_does_not_exist(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(input=f"forget it {tell('forget_memory', number=7)}\n/memories\n")
    assert run.stdout.startswith("Tool said: There is no saved memory 7.")
    assert "no saved memories yet" in run.stderr


def test_memories_commands_list_add_edit_and_forget(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(
        input="/memories add I am vegetarian\n/memories add I have two cats\n/memories edit 1 I eat fish now\n"
        "/memories forget 2\n/memories forget 9\n/memories edit x\n/memories\nwhat is for dinner?\n"
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[:6] == [
        "saved: I am vegetarian",
        "saved: I have two cats",
        "updated: I eat fish now",
        "forgot: I have two cats",
        "there is no saved memory 9: /memories lists them",
        "/memories edit takes N TEXT, as in /memories edit 2 I live in Lyon",
    ]
    listed = [line for line in run.stdout.splitlines() if line.startswith("1.")]
    assert len(listed) == 1 and listed[0].endswith("I eat fish now")
    assert "I eat fish now" in system_text(server) and "two cats" not in system_text(server)


def test_saved_memories_off_offers_no_tools_pins_nothing_and_says_so(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="/memories add I am vegetarian\n")
    run = memchat(input="/memories\nsuggest a dinner\n", MEMCHAT_SAVED_MEMORIES="off")
    assert "saved memories are off (MEMCHAT_SAVED_MEMORIES=off)" in run.stderr
    assert "remember" not in tool_names(server) and "vegetarian" not in system_text(server)


def test_export_and_import_carry_the_saved_memories(memchat: Memchat, tmp_path: Path) -> None:
    memchat(input="hello\n/memories add I am vegetarian\n")
    exported = memchat("export", "--user", "user1").stdout
    assert json.loads(exported)["saved_memories"][0]["text"] == "I am vegetarian"
    (tmp_path / "user1.json").write_text(exported)
    run = memchat("import", str(tmp_path / "user1.json"), "--db", str(tmp_path / "other.db"))
    assert run.returncode == 0, run.stderr
    listed = memchat("--db", str(tmp_path / "other.db"), input="/memories\n").stdout
    assert "I am vegetarian" in listed


def test_pinned_facts_stay_within_a_tenth_of_the_budget_and_the_least_recently_confirmed_go_first() -> None:
    estimator = TokenEstimator()
    facts = [saved.Fact(n, f"fact number {n} " + "word " * 20, "2026-01-01", f"2026-01-{n:02d}") for n in range(1, 21)]
    text, left_out = saved.pinned(facts, 2000 // saved.PINNED_SHARE, estimator)
    assert estimator.tokens(text) <= 200 and 0 < left_out < 20
    kept = [int(line.split(".")[0]) for line in text.splitlines()[1:]]
    assert kept == list(range(21 - len(kept), 21))  # the newest-confirmed


def test_a_fact_said_again_is_confirmed_not_kept_twice() -> None:
    facts, said = saved.applied([], [saved.Change(0, "is vegetarian")], "2026-01-01 10:00")
    again, said_again = saved.applied(facts, [saved.Change(0, "Is  vegetarian")], "2026-03-01 10:00")
    assert said == ["saved: is vegetarian"] and said_again == []
    assert [(fact.text, fact.confirmed) for fact in again] == [("is vegetarian", "2026-03-01 10:00")]


def noting_requests(server: FakeOpenAI) -> list[Any]:
    return [
        r
        for r in server.requests
        if r.path.endswith("/chat/completions") and "lasting facts about a user" in str(r.body["messages"][0])
    ]


def test_a_server_without_tools_gets_saved_memories_from_a_short_request_after_each_turn(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    run = memchat(input="I never eat meat [[fact:is vegetarian]]\nsuggest a dinner\n", MEMCHAT_TOOLS="off")
    assert run.returncode == 0, run.stderr
    assert "saved: is vegetarian" in run.stderr.splitlines()  # said with the next turn
    assert "tools" not in noting_requests(server)[0].body and len(noting_requests(server)) == 2
    chats = [r for r in server.requests if r.path.endswith("/chat/completions") and r not in noting_requests(server)]
    assert "] is vegetarian" in str(chats[-1].body["messages"][0]["content"])
    assert "tools" not in chats[-1].body


def test_saved_memories_by_tools_only_send_no_request_after_the_turn(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="I never eat meat [[fact:is vegetarian]]\n", MEMCHAT_TOOLS="off", MEMCHAT_SAVED_MEMORIES="tools")
    assert noting_requests(server) == []
    assert "no saved memories yet" in memchat(input="/memories\n").stderr


def test_a_noting_answer_keeps_only_what_follows_the_form() -> None:
    facts = [saved.Fact(3, "lives in Leeds", "2026-01-01", "2026-01-01")]
    changes = saved.noted("SAVE: is vegetarian\nREPLACE 3: lives in Lyon\nFORGET 9\nsure, here you go", facts)
    assert changes == [saved.Change(0, "is vegetarian"), saved.Change(3, "lives in Lyon")]
    assert saved.noted("NOTHING", facts) == []
    assert saved.noted("\n".join(f"SAVE: fact {n}" for n in range(9)), facts) == []  # not following the form


def test_a_bad_saved_memories_setting_is_one_line(memchat: Memchat) -> None:
    run = memchat(input="hello\n", MEMCHAT_SAVED_MEMORIES="maybe")
    assert run.returncode == 2
    assert run.stderr == "error: MEMCHAT_SAVED_MEMORIES is 'maybe': use on, tools or off\n"


def test_forget_takes_the_saved_memories_made_in_the_exchanges_it_deletes(memchat: Memchat, tmp_path: Path) -> None:
    memchat(input=f"I bought a sailing boat {tell('remember', fact='owns a sailing boat')}\n/memories add I like tea\n")
    # A copy keeps which exchange each came from, though the other store numbers its messages its own way.
    other = str(tmp_path / "other.db")
    assert memchat("copy", "--from", str(memchat.db), "--to", other).returncode == 0
    for db in (str(memchat.db), other):
        run = memchat("--db", db, input="/forget sailing\n/memories\n")
        assert "forgot 1 exchange matching 'sailing', and 1 saved memory made in them" in run.stderr, run.stderr
        assert "I like tea" in run.stdout and "sailing" not in run.stdout


def test_what_the_pass_after_a_turn_saved_is_said_even_when_the_next_turn_fails(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    run = memchat(input="I never eat meat [[fact:is vegetarian]]\nfail [[status:500]]\nhello\n", MEMCHAT_TOOLS="off")
    assert run.stderr.count("saved: is vegetarian") == 1, run.stderr
