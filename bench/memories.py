"""Saved memories: whether what the person told once reaches every later request, and only its newest value.

Run from the repository root, after ``pip install -e '.[test]'``::

    .venv/bin/python bench/memories.py [--preferences N] [--filler N] [--budget N]

One user tells memchat N lasting things in real turns (through ``TurnRunner.run``,
against the local test server, which plays a model that calls ``remember`` when
told something lasting: the message carries the call it makes). A third of them
later change (``remember`` with ``replaces``); with ``--no-tools``, a server that takes no tools,
the facts come instead from the short request memchat sends after each turn, and its size is
reported. Then come ``--filler`` exchanges about other
things, and for each fact a question that shares no word with it ("what should I
cook tonight?" for "is vegetarian"): the request memchat builds for it
(``TurnRunner.request_for``) is checked for the fact's newest value and for its old
one. It reports how many of the requests carried each, the tokens the pinned
facts took against the budget, and whether every request stayed within it.
``--smoke`` is the suite's quick run. Nothing is downloaded; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from config import load_settings  # noqa: E402
from fake_openai import FakeOpenAI, request_tokens  # noqa: E402
from memchat.context import saved  # noqa: E402
from memchat.stores import open_store  # noqa: E402
from memchat.turn import TurnRunner  # noqa: E402

# What people tell once and expect known later; the question never shares a word with the fact.
FACTS = [
    ("is vegetarian", "eats fish now", "What should I cook tonight?"),
    ("lives in Leeds", "lives in Lyon", "Plan my Saturday afternoon."),
    ("has a dog called Rex", "has a dog called Rex", "Which pet food brand suits us?"),
    ("is allergic to peanuts", "is allergic to peanuts", "Recommend a snack for the train."),
    ("works as a nurse", "works as a teacher", "How can I unwind after my shifts?"),
    ("prefers replies in French", "prefers replies in French", "Explain photosynthesis briefly."),
]
FILLER = "Tell me something about the history of bridges, number {n}."


def told(fact: str, tools: bool) -> str:
    call = f"[[tool:remember:{json.dumps({'fact': fact})}]]" if tools else f"[[fact:{fact}]]"
    return f"Something you should know: I {fact}. {call}"


def changed(number: int, fact: str) -> str:
    return f"That changed: I {fact}. [[tool:remember:{json.dumps({'fact': fact, 'replaces': number})}]]"


async def measure(preferences: int, filler: int, budget: int, tools: bool = True) -> dict[str, object]:
    facts = [FACTS[n % len(FACTS)] for n in range(preferences)]
    # Without tools nothing is updated: each fact's newest value is the one told.
    facts = [
        (f"{old} ({n + 1})", f"{new if tools else old} ({n + 1})", question)
        for n, (old, new, question) in enumerate(facts)
    ]
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as folder:
        settings = replace(
            load_settings(env={"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "x", "HOME": folder}),
            context_tokens=budget,
            tools=tools,
        )
        runner = TurnRunner(settings)
        store = await open_store(str(Path(folder) / "memories.db"))
        memory = store.memory("bench")
        said: list[str] = []
        for old, _, _ in facts:
            result = await runner.run(memory, told(old, tools))
            said += result.notices
            # What Conversation.fold does after a turn: on a server without tools, the noting pass.
            said += await runner.note_memories(memory, result.text, result.reply)
        numbers = {fact.text: fact.number for fact in await saved.read(memory)}
        for old, new, _ in facts:
            if new != old:
                said += (await runner.run(memory, changed(numbers[old], new))).notices
        noting = [request_tokens(r.body) for r in server.requests if "lasting facts about a user" in str(r.body)]
        turns = [r for r in server.requests if r.path.endswith("/completions") and "lasting facts" not in str(r.body)]
        # Filler exchanges go straight to the store: what is measured is the requests after them.
        for start in range(0, filler, 500):
            items: list[dict[str, str]] = []
            for n in range(start, min(filler, start + 500)):
                items += [{"role": "user", "content": FILLER.format(n=n)}, {"role": "assistant", "content": "Noted."}]
            await memory.add_items(items)
        kept = await saved.read(memory)
        newest = old_seen = within = 0
        pinned_tokens: list[int] = []
        for old, new, question in facts:
            request = await runner.request_for(memory, question, facts=kept)
            newest += f"] {new}" in request.instructions
            old_seen += old != new and f"] {old}" in request.instructions
            pinned, _ = saved.pinned(kept, runner.budget // saved.PINNED_SHARE, runner.estimator)
            pinned_tokens.append(runner.estimator.tokens(pinned))
            total = runner.estimator.tokens(request.instructions + question) + request.tokens
            within += total <= budget
        await runner.aclose()
        await store.close()
    updated = sum(old != new for old, new, _ in facts)
    return {
        "the model saves with": "its tools" if tools else "a request after each turn",
        "preferences": preferences,
        "updated": updated,
        "filler exchanges": filler,
        "budget": budget,
        # A pass's lines are said again with the next turn: each counts once.
        "saved by the model": sum(line.startswith("saved: ") for line in set(said)),
        "updated by the model": sum(line.startswith("updated: ") for line in set(said)),
        "requests with the newest value": f"{newest} of {len(facts)}",
        "requests with an old value": f"{old_seen} of {len(facts)}",
        "pinned tokens, most": max(pinned_tokens),
        "pinned share of the budget, most": f"{100 * max(pinned_tokens) / budget:.1f}%",
        "requests within the budget": f"{within} of {len(facts)}",
        "chat requests": len(turns),
        "requests after a turn (no tools)": len(noting),
        "tokens of one, most": max(noting, default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preferences", type=int, default=12, help="lasting facts told (a third later change)")
    parser.add_argument("--filler", type=int, default=500, help="exchanges about other things after them")
    parser.add_argument("--budget", type=int, default=8000, help="--context-tokens (default: memchat's)")
    parser.add_argument(
        "--no-tools", action="store_true", help="a server without tools: the facts come from a request after each turn"
    )
    parser.add_argument("--smoke", action="store_true", help="a quick run (the test suite's)")
    args = parser.parse_args()
    if args.smoke:
        args.preferences, args.filler = 6, 40
    figures = asyncio.run(measure(args.preferences, args.filler, args.budget, tools=not args.no_tools))
    print("| measure | value |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
