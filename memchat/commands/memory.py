"""Commands on the stored conversation: /history, /summary, /search, /forget, /clear, /undo, /retry, /edit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memchat.commands.registry import (
    Arg,
    CommandOutput,
    EditLast,
    Found,
    History,
    Note,
    Resend,
    Rows,
    SummaryText,
    command,
    plural,
)

if TYPE_CHECKING:
    from memchat.conversation import Conversation
    from memchat.stores.protocol import Turn

DEFAULT_HISTORY_TURNS = 20
# Exchanges /search shows.
SEARCH_RESULTS = 5


def describe_undo(removed: int) -> str:
    """What /undo did, in plain words, for every front end."""
    if removed == 0:
        return "nothing to undo"
    if removed == 1:
        return "removed your last message (it had no reply)"
    steps = removed - 2
    extra = f", with {plural(steps, 'tool step')} between them" if steps > 0 else ""
    return f"removed your last message and its reply{extra}"


@command(
    "history",
    f"show the summary and the last N exchanges (default {DEFAULT_HISTORY_TURNS})",
    arg=Arg.COUNT,
    arg_help="[N]",
    arg_error="/history takes a positive number of exchanges: type /history 5",
    default=str(DEFAULT_HISTORY_TURNS),
)
async def _history(conv: Conversation, arg: str) -> CommandOutput:
    return History(await conv.memory.last_turns(int(arg)), await conv.memory.summary())


@command(
    "search",
    "find your past exchanges that match QUERY, best first, with their dates",
    arg=Arg.REQUIRED,
    arg_help="QUERY",
    arg_error="/search needs words to look for: type /search QUERY",
)
async def _search(conv: Conversation, arg: str) -> CommandOutput:
    from memchat.stores.search import query_words

    found = await _matching(conv, arg, by_meaning=True)
    if not found:
        return Note(f"nothing in the memory of {conv.user} matches {arg!r}")
    return Found(arg, query_words(arg), [(day, turn.items) for day, turn in found])


async def _matching(conv: Conversation, query: str, *, by_meaning: bool = False) -> list[tuple[str, Turn]]:
    """The exchanges that match the words of ``query``, best first; ``by_meaning``, those near in meaning too.

    /forget goes by words alone: the nearest in meaning always exist, related or not.
    """
    from memchat.context.recall import matching

    return await matching(conv.memory, query, SEARCH_RESULTS, conv.runners.semantic if by_meaning else None)


async def _ask_forget(conv: Conversation, query: str) -> str:
    from memchat.items import item_text

    found = await _matching(conv, query)
    if not found:
        return ""
    lines = [f"  [{day or 'date unknown'}] {item_text(turn.items[0])[:100]}" for day, turn in found]
    return "\n".join([f"these exchanges match {query!r}:", *lines, f"forget these {len(found)}?"])


@command(
    "forget",
    "delete your past exchanges whose words match QUERY, after showing them",
    arg=Arg.REQUIRED,
    arg_help="QUERY",
    arg_error="/forget needs words to look for: type /forget QUERY (see what matches with /search QUERY)",
    confirm=_ask_forget,
    rewrites=True,
)
async def _forget(conv: Conversation, arg: str) -> CommandOutput:
    found = await _matching(conv, arg)
    if not found:
        return Note(f"nothing in the memory of {conv.user} matches {arg!r}: nothing was forgotten")
    from memchat.context import saved

    facts = await saved.read(conv.memory) if conv.settings.saved_memories else []
    summary_went = await conv.memory.forget([turn for _, turn in found])
    said = f"forgot {plural(len(found), 'exchange')} matching {arg!r}"
    # What the model saved from them goes with them.
    if went := await saved.change(conv.memory, saved.from_turns(facts, {turn.start for _, turn in found})):
        said += f", and {len(went)} saved {'memory' if len(went) == 1 else 'memories'} made in them"
    if summary_went:
        said += "; the summary of older turns may have mentioned them, so it was removed and is written again from what remains"
    return Note(said)


@command("summary", "show what is remembered of turns too old to send in full")
async def _summary(conv: Conversation, arg: str) -> CommandOutput:
    summary = await conv.memory.summary()
    return SummaryText(summary.text if summary else None)


async def _ask_clear(conv: Conversation, arg: str) -> str:
    return f"wipe all {await conv.memory.count()} messages of {conv.user}, with the summary and instructions?"


@command(
    "clear", "wipe the current user's memory: messages, summary and instructions", confirm=_ask_clear, rewrites=True
)
async def _clear(conv: Conversation, arg: str) -> CommandOutput:
    await conv.memory.clear_session()
    return Note(f"cleared the memory of {conv.user}")


@command("undo", "remove the last exchange (your last message and its reply)", rewrites=True)
async def _undo(conv: Conversation, arg: str) -> CommandOutput:
    return Note(describe_undo(await conv.memory.undo()))


@command("retry", "ask again for your last message; the new reply replaces the old one (kept if this fails)")
async def _retry(conv: Conversation, arg: str) -> CommandOutput:
    text = await conv.last_message()
    if text is None:
        return Note("nothing to retry: send a message first")
    return Resend(text)


@command(
    "edit",
    "put your last message in the input line; sending it replaces the last exchange",
    terminal_only=True,
)
async def _edit(conv: Conversation, arg: str) -> CommandOutput:
    text = await conv.last_message()
    if text is None:
        return Note("nothing to edit: send a message first")
    return EditLast(text)


MEMORIES_USAGE = "/memories lists them; /memories add TEXT, /memories edit N TEXT, /memories forget N change them"


@command(
    "memories",
    "your saved memories, numbered and dated; add TEXT, edit N TEXT or forget N to change them",
    arg=Arg.OPTIONAL,
    arg_help="[add TEXT / edit N TEXT / forget N]",
)
async def _memories(conv: Conversation, arg: str) -> CommandOutput:
    from memchat.context import saved

    if not conv.settings.saved_memories:
        return Note("saved memories are off (MEMCHAT_SAVED_MEMORIES=off): nothing is saved or pinned")
    facts = await saved.read(conv.memory)
    if not arg:
        if not facts:
            return Note(f"no saved memories yet: the model saves lasting things you tell it ({MEMORIES_USAGE})")
        return Rows({f"{fact.number}.": f"[{fact.confirmed[:10]}] {fact.text}" for fact in facts})
    verb, _, rest = arg.partition(" ")
    verb, rest = verb.lower(), rest.strip()
    if verb == "add":
        if not rest:
            return Note("/memories add needs the text: /memories add I am vegetarian")
        change = saved.Change(0, rest, "you")
    elif verb in ("edit", "forget"):
        number_text, _, text = rest.partition(" ")
        if not number_text.isdigit() or (verb == "edit" and not text.strip()):
            shape = "N TEXT, as in /memories edit 2 I live in Lyon" if verb == "edit" else "N, as in /memories forget 2"
            return Note(f"/memories {verb} takes {shape}")
        number = int(number_text)
        if all(fact.number != number for fact in facts):
            return Note(f"there is no saved memory {number}: /memories lists them")
        change = saved.Change(number, text.strip() if verb == "edit" else None, "you")
    else:
        return Note(f"unknown: /memories {verb}. {MEMORIES_USAGE}")
    said = await saved.change(conv.memory, [change])
    return Note("; ".join(said) if said else "nothing changed: it was saved already")
