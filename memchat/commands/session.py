"""Commands on the model and what goes in and out: /model, /usage, /copy, /export, /instructions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from memchat.commands.registry import Arg, Clipboard, CommandOutput, Document, Note, Rows, command, plural

if TYPE_CHECKING:
    from memchat.conversation import Conversation

# Standing instructions go with every request, so they are kept short.
MAX_INSTRUCTIONS = 4000


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a reply, in order, as the Markdown parser reads them."""
    from markdown_it import MarkdownIt

    return [token.content for token in MarkdownIt().parse(markdown) if token.type in ("fence", "code_block")]


@command("model", "show the model, or switch to NAME for this session", arg=Arg.OPTIONAL, arg_help="[NAME]")
async def _model(conv: Conversation, arg: str) -> CommandOutput:
    where = conv.settings.base_url or "OpenAI"
    if not arg:
        return Note(f"model: {conv.model} at {where}")
    if any(char.isspace() for char in arg):
        return Note(f"a model name has no spaces: {arg!r} was not taken; the model is still {conv.model}")
    conv.model = arg
    return Note(
        f"now using {arg} at {where} for this session (--model or OPENAI_DEFAULT_MODEL sets it for every start)"
    )


@command("usage", "tokens of the last request and of this session, and how full the context budget was")
async def _usage(conv: Conversation, arg: str) -> CommandOutput:
    last, total = conv.last, conv.usage
    if last is None:
        return Note("no request yet in this session: send a message first")
    unknown = " (the server did not report token counts)" if last.usage.input_tokens == 0 else ""
    share = 100 * last.history_tokens / last.budget if last.budget else 0.0
    return Rows(
        {
            "model": conv.model,
            "last request": f"{last.usage.input_tokens:,} tokens in, {last.usage.output_tokens:,} out{unknown}",
            "this session": f"{total.input_tokens:,} tokens in, {total.output_tokens:,} out, in {plural(total.turns, 'turn')}",
            "context budget": f"history of about {last.history_tokens:,} of {last.budget:,} tokens ({share:.0f}%)"
            + (", older turns summarized" if last.context.overflow or last.context.summary else ""),
            **_costs(conv),
        }
    )


def _costs(conv: Conversation) -> dict[str, str]:
    """What the last turn and the session cost, estimated; nothing for a model without a known price."""
    from memchat.conversation import cost

    price, total = conv.last_price, conv.usage
    rows = {}
    if conv.last is not None and price is not None:
        rows["last turn cost"] = (
            f"${cost(conv.last.usage, price):.4f} (estimated at ${price[0]:g} / ${price[1]:g} a million tokens in / out)"
        )
    if total.priced_turns:
        of = (
            ""
            if total.priced_turns == total.turns
            else f" (the {plural(total.priced_turns, 'turn')} with a known price)"
        )
        rows["this session cost"] = f"${total.cost:.4f}{of}"
    return rows


@command(
    "copy",
    "copy the last reply, or its Nth code block, to the clipboard (works over SSH)",
    arg=Arg.COUNT,
    arg_help="[N]",
    arg_error="/copy takes the number of a code block: type /copy 1",
    terminal_only=True,
)
async def _copy(conv: Conversation, arg: str) -> CommandOutput:
    from memchat.items import item_text

    replies = [item for item in await conv.memory.last_turns(1) if item.get("role") == "assistant"]
    if not replies:
        return Note("no reply to copy yet")
    reply = item_text(replies[-1])
    if not arg:
        return Clipboard(reply, "the last reply")
    blocks = code_blocks(reply)
    number = int(arg)
    if number > len(blocks):
        return Note(f"the last reply has {plural(len(blocks), 'code block')}: /copy alone copies all of it")
    return Clipboard(blocks[number - 1], f"code block {number} of the last reply")


@command(
    "export",
    "your whole conversation, summary and instructions as Markdown (JSON if FILE ends in .json)",
    arg=Arg.OPTIONAL,
    arg_help="[FILE]",
)
async def _export(conv: Conversation, arg: str) -> CommandOutput:
    from memchat.stores.transfer import Snapshot

    snapshot = await Snapshot.of(conv.memory)
    as_json = arg.lower().endswith(".json")
    text = snapshot.to_json() if as_json else snapshot.to_markdown()
    name = re.sub(r"[^\w.-]+", "_", f"memchat-{conv.user}") + (".json" if as_json else ".md")
    return Document(text, name, arg or None, len(snapshot.items))


@command(
    "instructions",
    "show your standing instructions (a persona, a language, a style), set them to TEXT, or 'off'",
    arg=Arg.OPTIONAL,
    arg_help="[TEXT]",
)
async def _instructions(conv: Conversation, arg: str) -> CommandOutput:
    if not arg:
        current = await conv.memory.instructions()
        if current is None:
            return Note("no standing instructions: /instructions TEXT sets some, sent with every request")
        return Note(f"your standing instructions: {current}")
    if arg.lower() == "off":
        await conv.memory.set_instructions(None)
        return Note("standing instructions removed")
    if len(arg) > MAX_INSTRUCTIONS:
        return Note(
            f"not set: the instructions are {len(arg):,} characters; keep them under {MAX_INSTRUCTIONS:,} "
            "(they go with every request)"
        )
    await conv.memory.set_instructions(arg)
    return Note("standing instructions set: every request carries them from now on (/instructions off removes them)")
