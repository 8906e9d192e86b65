"""Text made safe to print in a terminal, and the spinner shown while a reply is awaited.

Shared by what prints (``output``) and what renders Markdown (``render``), so neither imports the other's insides.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.spinner import Spinner
    from rich.text import Text

# Control characters other than newline and tab: in a terminal they would move the cursor,
# recolour or clear the screen, whether they came from the user, a stored message or the model.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """``text`` with control characters made visible (``\\x1b``) instead of obeyed."""
    return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def plain(text: str, style: str = "") -> Text:
    """Text that is printed as it reads: never markup, never a control sequence."""
    from rich.text import Text

    return Text(shown(text), style=style)


def spinner(text: str) -> Spinner:
    """What shows while a reply is awaited, in every kind of stream."""
    from rich.spinner import Spinner

    return Spinner("dots", text=text, style="dim")
