"""Replies rendered as Markdown while they stream: what ends on screen is the reply rendered whole."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from fake_openai import MARKDOWN_REPLY
from memchat.terminal import render
from memchat.terminal.render import MarkdownStream, markdown
from support import ROOT


def _screenshot_script() -> ModuleType:
    path = ROOT / "docs" / "screenshot.py"
    spec = importlib.util.spec_from_file_location("screenshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCREENSHOT = _screenshot_script()
REPLY: str = SCREENSHOT.REPLY

REPLIES = [MARKDOWN_REPLY, REPLY, "plain words only", "```\nan unclosed code block\nstill open"]


def streamed(text: str, cuts: list[int], width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    stream = MarkdownStream(console)
    start = 0
    for cut in [*sorted(cuts), len(text)]:
        stream.add(text[start:cut])
        start = cut
    stream.finish()
    return console.export_text()


def whole(text: str, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(markdown(text))
    return console.export_text()


@pytest.fixture(autouse=True)
def every_piece_redraws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "FRAME_SECONDS", 0)


@pytest.mark.parametrize("width", [100, 40, 12])
@pytest.mark.parametrize("reply", REPLIES)
def test_a_reply_streamed_word_by_word_ends_as_it_renders_whole(reply: str, width: int) -> None:
    cuts = [index + 1 for index, char in enumerate(reply) if char == " "]
    assert streamed(reply, cuts, width) == whole(reply, width)


@settings(max_examples=60, deadline=None)
@given(reply=st.sampled_from(REPLIES), data=st.data())
def test_a_reply_streamed_in_any_pieces_ends_as_it_renders_whole(reply: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(reply)), max_size=40))
    render.FRAME_SECONDS = 0
    assert streamed(reply, cuts, 50) == whole(reply, 50)


def test_control_characters_from_the_model_are_shown_not_obeyed() -> None:
    shown = streamed("clear the screen \x1b[2J and ring \x07 done", [3, 20], 60)
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2J" in shown


def test_only_the_newest_lines_of_a_block_taller_than_the_window_are_redrawn() -> None:
    console = Console(width=40, height=10, file=io.StringIO(), force_terminal=True)
    tall = render._NewestLines(markdown("\n\n".join(f"line {n}" for n in range(30))), 8)
    lines = console.render_lines(tall, pad=False)
    assert len(lines) <= 8
    assert "line 29" in "".join(segment.text for segment in lines[-1])


def test_the_readme_screenshot_draws(tmp_path: Path) -> None:
    target = tmp_path / "terminal.svg"
    SCREENSHOT.draw(target)
    svg = target.read_text()
    assert svg.startswith("<svg") and "count_words" in svg and "**" not in svg
