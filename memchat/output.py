"""Everything memchat prints: replies on stdout, notices and errors on stderr.

Colour only when the stream is a terminal (and NO_COLOR is unset); text from the
user or the model is never read as markup.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .items import Item, describe
from .memory import Summary, UserStats


class Output:
    """The terminal, as memchat writes to it."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.out = Console(file=stdout or sys.stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)

    def error(self, message: str) -> None:
        self.err.print(Text("error: ", style="bold red") + Text(message))

    def notice(self, message: str) -> None:
        self.err.print(Text(message, style="dim"))

    def reply(self, text: str) -> None:
        self.out.print(Text(text))

    def stream_piece(self, piece: str) -> None:
        self.out.file.write(piece)
        self.out.file.flush()

    def end_stream(self) -> None:
        self.out.file.write("\n")
        self.out.file.flush()

    def lines(self, rows: dict[str, str]) -> None:
        width = max(map(len, rows))
        for key, value in rows.items():
            self.out.print(Text(key.ljust(width + 2), style="bold") + Text(value))

    def summary(self, text: str | None) -> None:
        if text is None:
            self.notice("(no summary yet: it is written once the conversation outgrows the context budget)")
        else:
            self.out.print(Text("summary: ", style="bold magenta") + Text(text))

    def history(self, items: list[Item], summary: Summary | None = None) -> None:
        if summary is not None:
            self.summary(summary.text)
        if not items:
            self.notice("(no stored conversation)")
            return
        styles = {"you": "bold cyan", "assistant": "bold green"}
        for item in items:
            speaker, text = describe(item)
            body = text.replace("\n", "\n" + " " * (len(speaker) + 2))
            self.out.print(Text(f"{speaker}: ", style=styles.get(speaker, "bold")) + Text(body))

    def users(self, users: list[UserStats], current: str) -> None:
        if not users:
            self.notice("(no users in the database yet)")
            return
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("user", "messages", "last active (UTC)"):
            table.add_column(column, justify="right" if column == "messages" else "left")
        for stats in users:
            mark = " *" if stats.user == current else ""
            table.add_row(Text(stats.user + mark), str(stats.messages), stats.last_active)
        self.out.print(table)
