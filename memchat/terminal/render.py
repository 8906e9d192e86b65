"""A reply rendered as Markdown while it streams in, in a terminal.

Only the block still being written (the last paragraph, list or code block) is
redrawn; every block before it is complete and printed once, for good. So a
long reply neither flickers nor loses lines that scrolled off, and the part
being redrawn never needs more than the window's height (a taller block shows
its newest lines until it is complete, then is printed whole).
"""

from __future__ import annotations

import time

from markdown_it import MarkdownIt
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment

from memchat.terminal.text import shown, spinner

# Redraws at most this often: a fast server sends hundreds of pieces a second.
FRAME_SECONDS = 1 / 15
CODE_THEME = "monokai"


def markdown(text: str) -> Markdown:
    # Links show their address: a terminal cannot hover, and a reply should not hide where a link goes.
    return Markdown(text, code_theme=CODE_THEME, hyperlinks=False)


def stable_length(text: str, parser: MarkdownIt) -> int:
    """How many characters at the start of ``text`` form blocks that later text cannot change."""
    starts = [token.map[0] for token in parser.parse(text) if token.level == 0 and token.map and token.nesting >= 0]
    if len(starts) < 2:
        return 0
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: starts[-1]])


class _Lines:
    """Lines already rendered, printed as they are."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()


class _NewestLines:
    """A renderable cut to its last lines, so a live region never outgrows the window."""

    def __init__(self, renderable: RenderableType, height: int) -> None:
        self.renderable, self.height = renderable, height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        for line in lines[-self.height :]:
            yield from line
            yield Segment.line()


class MarkdownStream:
    """Shows a streaming reply: a spinner until the first piece, then Markdown."""

    def __init__(self, console: Console, waiting: str = "thinking…") -> None:
        self.console = console
        self._parser = MarkdownIt("commonmark").enable("table")
        self._text = ""
        # Characters of the reply printed for good, and the lines they took.
        self._printed = 0
        self._lines = 0
        self._drawn = 0.0
        self._live = self._spinning(waiting)

    def _spinning(self, waiting: str) -> Live:
        live = Live(
            spinner(waiting),
            console=self.console,
            transient=True,
            refresh_per_second=12,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        live.start()
        return live

    def waiting(self, text: str) -> None:
        """Change what the spinner says (before the first piece)."""
        if not self._text:
            self._live.update(spinner(text))

    def add(self, piece: str) -> None:
        # Control characters from the model are shown, never obeyed.
        self._text += shown(piece)
        now = time.monotonic()
        if now - self._drawn < FRAME_SECONDS:
            return
        self._drawn = now
        done = stable_length(self._text, self._parser)
        if done > self._printed:
            self._print_through(done)
            self._printed = done
        height = max(1, self.console.size.height - 2)
        self._live.update(_NewestLines(markdown(self._text[self._printed :]), height), refresh=True)

    def finish(self) -> None:
        """Print what has not been printed for good; also used when a reply is stopped half-way."""
        self._live.stop()
        self._print_through(len(self._text))
        self._printed = len(self._text)

    def pause(self) -> None:
        """Leave what came so far on screen, whole, so a question can be asked below it."""
        self.finish()
        self._text, self._printed, self._lines = "", 0, 0

    def resume(self, waiting: str) -> None:
        self._live = self._spinning(waiting)

    def _print_through(self, end: int) -> None:
        """Print the lines of the reply's first ``end`` characters that are not on screen yet.

        The text is rendered from its start each time (only when a block completes), so the
        blocks keep the spacing they have when rendered whole.
        """
        lines = self.console.render_lines(markdown(self._text[:end]), pad=False)
        fresh = lines[self._lines :]
        self._lines = len(lines)
        if fresh:
            self.console.print(_Lines(fresh))
