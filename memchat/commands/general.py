"""Commands about the session itself: /help, and switching and listing users."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memchat.commands.registry import Arg, CommandOutput, Help, Note, Users, command

if TYPE_CHECKING:
    from memchat.conversation import Conversation


@command("help", "show this list")
async def _help(conv: Conversation, arg: str) -> CommandOutput:
    if conv.settings.suggest_embeddings:
        return Help(
            "recall goes by words alone here: set MEMCHAT_EMBEDDING_MODEL to an embedding model of this server "
            "(nomic-embed-text on Ollama, for one) to search by meaning too"
        )
    return Help()


@command(
    "user",
    "switch to the memory of another user id",
    arg=Arg.REQUIRED,
    arg_help="ID",
    arg_error="/user needs an id: type /user NAME",
    terminal_only=True,
)
async def _user(conv: Conversation, arg: str) -> CommandOutput:
    count = await conv.switch_user(arg)
    return Note(f"now talking as {conv.user} ({count} messages remembered)")


@command("users", "list user ids in the database, with message counts and last activity", terminal_only=True)
async def _users(conv: Conversation, arg: str) -> CommandOutput:
    return Users(await conv.store.users(), conv.user)
