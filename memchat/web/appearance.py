"""The page's appearance: memchat's name, mark, colours, words and Readme in place of Chainlit's demo ones.

Chainlit takes each of these from its app folder (memchat's state folder, see
``serve``): the mark and colours from ``public/``, the Readme from ``chainlit.md``,
the words of its screens from ``.chainlit/translations/``. ``dress`` writes them
there at every start, so a new memchat brings its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).with_name("assets")
# The files Chainlit looks for in public/: the mark (also the avatar and the login picture), the header logo.
PUBLIC = ("favicon.svg", "logo_light.svg", "logo_dark.svg", "theme.json")

# Chainlit's words that do not fit memchat: a user id is not an email, a failed login should say how to get a
# password, and the pencil starts no new chat (the page is drawn again from the same memory; /clear wipes it).
# Set in every language, in English like the rest of memchat's words, so no translation says otherwise.
WORDS: dict[str, str] = {
    "auth.login.title": "Log in to memchat",
    "auth.login.form.email.label": "User id",
    "auth.login.form.email.placeholder": "alice",
    "auth.login.form.email.required": "a user id is required",
    "auth.login.form.actions.signin": "Log in",
    # The login form looks its error up by the answer's status text, in lower case.
    "auth.login.errors.unauthorized": (
        "Wrong user id or password. No password yet? On the machine that runs memchat: memchat passwd YOUR_ID"
    ),
    "auth.login.errors.too many requests": "Too many failed logins: wait a minute, then try again.",
    "auth.login.errors.service unavailable": "The memory store cannot be reached: try again in a minute.",
    "auth.login.errors.default": "Could not log in. Try again, or ask whoever runs memchat.",
    # The composer's menu lists memchat's commands, not tools of the model.
    "chat.commands.button": "Commands",
    "navigation.newChat.button": "Redraw",
    "navigation.newChat.dialog.title": "Draw the page again",
    "navigation.newChat.dialog.description": (
        "The page is drawn again from your memory; nothing is deleted. To wipe your memory, use clear."
    ),
    "navigation.newChat.dialog.tooltip": "Draw the page again from your memory",
}


def dress(root: Path, translations: Path) -> None:
    """Put memchat's appearance into Chainlit's app folder ``root``; ``translations`` holds Chainlit's own words."""
    public = root / "public"
    public.mkdir(parents=True, exist_ok=True)
    for name in PUBLIC:
        shutil.copyfile(ASSETS / name, public / name)
    shutil.copyfile(ASSETS / "readme.md", root / "chainlit.md")
    ours = root / ".chainlit" / "translations"
    ours.mkdir(parents=True, exist_ok=True)
    for source in translations.glob("*.json"):
        words = json.loads(source.read_text(encoding="utf-8"))
        for key, text in WORDS.items():
            _put(words, key.split("."), text)
        (ours / source.name).write_text(json.dumps(words, ensure_ascii=False, indent=1), encoding="utf-8")


def _put(tree: dict[str, Any], path: list[str], text: str) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = text
