"""Draw docs/terminal.svg: a reply as memchat renders it in a terminal.

The reply goes through memchat's own Markdown rendering (``Output.reply``, the
same as a streamed reply once complete) on a recording console, which rich
exports as SVG. Run it after changing how replies look:

    .venv/bin/python docs/screenshot.py [OUT.svg]
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from memchat.terminal.output import Output

REPLY = """## Counting words in a file

Read it **once**, split on whitespace, and count:

1. open the file as UTF-8
2. split each line into words
3. add them up

```python
from pathlib import Path

def count_words(path: str) -> int:
    return sum(len(line.split()) for line in Path(path).open(encoding="utf-8"))
```

| file | words |
|------|------:|
| notes.txt | 1,204 |
| todo.md | 87 |

`/copy 1` puts the code on your clipboard.
"""


def draw(target: Path) -> None:
    console = Console(record=True, width=84, force_terminal=True, color_system="truecolor", file=io.StringIO())
    out = Output()
    out.out = out.err = console
    out.rendered = True
    console.print(Text.assemble(("alice", "bold cyan"), "> how do I count the words in a file, in Python?"))
    out.reply(REPLY)
    out.notice("(2.1 s)")
    target.write_text(console.export_svg(title="memchat --user alice"), encoding="utf-8")


if __name__ == "__main__":
    draw(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "terminal.svg")
