"""Everything memchat prints: replies on stdout, notices and errors on stderr.

Colour only when the stream is a terminal (and NO_COLOR is unset); text from the
user or the model is never read as markup. On a pipe, replies, notices and errors
are written as they are, and rich is not even loaded: a one-shot piped turn
should cost no more than the plain SDK loop.
"""

from __future__ import annotations

import base64
import functools
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from memchat.items import Item, describe
from memchat.stores.protocol import Summary, UserStats
from memchat.terminal.text import plain, shown, spinner

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ReplyStream(Protocol):
    """A reply being shown as it arrives."""

    def waiting(self, text: str) -> None:
        """Say what is being waited for, until the first piece."""

    def add(self, piece: str) -> None: ...

    def finish(self) -> None:
        """The reply ended (or was stopped): leave it on screen, whole."""

    def pause(self) -> None:
        """Stop drawing, leaving what came on screen, so the person can be asked something."""

    def resume(self, waiting: str) -> None:
        """Go on after ``pause``, saying what is waited for."""


class PlainStream:
    """The raw text as it comes, with a spinner on stderr until the first piece when stderr is a terminal."""

    def __init__(self, output: Output, waiting: str) -> None:
        self.file = output.stdout
        self._spinner: Live | None = None
        if _is_terminal(output.stderr):
            from rich.live import Live

            self._spinner = Live(spinner(waiting), console=output.err, transient=True)
            self._spinner.start()

    def waiting(self, text: str) -> None:
        if self._spinner is not None:
            self._spinner.update(spinner(text))

    def add(self, piece: str) -> None:
        self._stop_spinner()
        self.file.write(shown(piece))
        self.file.flush()

    def finish(self) -> None:
        self._stop_spinner()
        self.file.write("\n")
        self.file.flush()

    def pause(self) -> None:
        self._stop_spinner()

    def resume(self, waiting: str) -> None:
        pass

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


class Progress:
    """A progress bar on stderr for work that turns out to take more than a second, in a terminal only."""

    SHOW_AFTER_SECONDS = 1.0

    def __init__(self, output: Output, what: str) -> None:
        self.output, self.what = output, what
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if time.monotonic() - self.started < self.SHOW_AFTER_SECONDS or not _is_terminal(self.output.stderr):
                return
            from rich.progress import Progress as Bar

            self._bar = Bar(console=self.output.err, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def finish(self, done: int) -> None:
        if self._bar is not None:
            self._bar.stop()
        if done and time.monotonic() - self.started >= self.SHOW_AFTER_SECONDS:
            self.output.notice(f"{self.what}: {done:,} messages, once")


class Output:
    """The terminal, as memchat writes to it."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None, *, plain: bool = False) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        # Markdown only where a person reads it: not on a pipe, not with --plain or NO_COLOR.
        self.rendered = _is_terminal(self.stdout) and not plain

    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(file=self.stdout, highlight=False, soft_wrap=True)

    @functools.cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(file=self.stderr, highlight=False, soft_wrap=True)

    def reply_stream(self, waiting: str = "thinking…") -> ReplyStream:
        if self.rendered:
            from memchat.terminal.render import MarkdownStream

            return MarkdownStream(self.out, waiting)
        return PlainStream(self, waiting)

    def clipboard(self, text: str) -> None:
        """Put ``text`` on the clipboard of the terminal showing this (OSC 52), wherever memchat runs."""
        self._write(self.stdout, f"\x1b]52;c;{base64.b64encode(text.encode()).decode()}\x07")

    def error(self, message: str) -> None:
        if _is_terminal(self.stderr):
            self.err.print(plain("error: ", style="bold red") + plain(message))
        else:
            self._write(self.stderr, f"error: {shown(message)}\n")

    def notice(self, message: str) -> None:
        if _is_terminal(self.stderr):
            self.err.print(plain(message, style="dim"))
        else:
            self._write(self.stderr, shown(message) + "\n")

    def reply(self, text: str) -> None:
        if self.rendered:
            from memchat.terminal.render import markdown

            self.out.print(markdown(shown(text)))
        else:
            self._write(self.stdout, shown(text) + "\n")

    def raw(self, text: str) -> None:
        """Text for a file or a pipe (an export), exactly as it is."""
        text = shown(text) if _is_terminal(self.stdout) else text
        self._write(self.stdout, text if text.endswith("\n") else text + "\n")

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()

    def lines(self, rows: dict[str, str]) -> None:
        width = max(map(len, rows))
        for key, value in rows.items():
            self.out.print(plain(key.ljust(width + 2), style="bold") + plain(value))

    def summary(self, text: str | None) -> None:
        if text is None:
            self.notice("(no summary yet: it is written once the conversation outgrows the context budget)")
        else:
            self.out.print(plain("summary: ", style="bold magenta") + plain(text))

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
            self.out.print(plain(f"{speaker}: ", style=styles.get(speaker, "bold")) + plain(body))

    def found(self, exchanges: list[tuple[str, list[Item]]], words: list[str]) -> None:
        """Search results: each exchange under its date, the words looked for highlighted in a terminal."""
        styles = {"you": "bold cyan", "assistant": "bold green"}
        for number, (day, items) in enumerate(exchanges):
            if number:
                self.out.print()
            self.out.print(plain(f"[{day or 'date unknown'}]", style="dim"))
            for item in items:
                speaker, text = describe(item)
                said = plain(text)
                said.highlight_words(words, style="reverse", case_sensitive=False)
                self.out.print(plain(f"{speaker}: ", style=styles.get(speaker, "bold")), said, sep="")

    def users(self, users: list[UserStats], current: str) -> None:
        if not users:
            self.notice("(no users in the database yet)")
            return
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("user", "messages", "last active (UTC)"):
            table.add_column(column, justify="right" if column == "messages" else "left")
        for stats in users:
            mark = " *" if stats.user == current else ""
            table.add_row(plain(stats.user + mark), str(stats.messages), stats.last_active)
        self.out.print(table)
