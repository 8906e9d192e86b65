"""Which tools may run: trusted in the config, allowed for good by the person, or asked each time.

A tool answered ``always`` in a terminal is kept per user id in ``allowed_tools.json``
beside memchat's other own files (``MEMCHAT``'s state folder): the servers are this
machine's, so is the trust in them. On a pipe and on the web page nobody can be asked,
so only trusted tools run there.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from memchat.errors import MemchatError


class Answer(enum.Enum):
    YES = "yes"
    NO = "no"
    ALWAYS = "always"


# Asks the person whether ``tool`` of ``server`` may run with these arguments (shown as JSON).
Approver = Callable[[str, str, str], Awaitable[Answer]]


class AllowedTools:
    """The tools each user allowed for good, in one small JSON file written whole."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, list[str]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # No file, or a damaged one, allows nothing: the person is asked again, which is safe.
            return {}
        if not isinstance(document, dict):
            return {}
        return {str(user): [str(tool) for tool in tools] for user, tools in document.items() if isinstance(tools, list)}

    def allowed(self, user: str, server: str, tool: str) -> bool:
        return f"{server}/{tool}" in self._read().get(user, [])

    def allow(self, user: str, server: str, tool: str) -> None:
        self._change(user, add=f"{server}/{tool}")

    def revoke(self, user: str) -> int:
        """Forget what ``user`` allowed for good; how many tools that was."""
        return self._change(user, add=None)

    def _change(self, user: str, add: str | None) -> int:
        document = self._read()
        before = document.get(user, [])
        if add is None:
            document.pop(user, None)
        elif add not in before:
            document[user] = [*before, add]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".allowed_tools.")
        except OSError as exc:
            raise self._unwritable(exc) from None
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=1)
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise self._unwritable(exc) from None
        return len(before)

    def _unwritable(self, exc: OSError) -> MemchatError:
        return MemchatError(f"cannot write {self.path} ({exc.strerror}): the tool is allowed for this time only")
