"""Import a package's submodules without running the package's own ``__init__`` until asked.

The Agents SDK imports one module of the MCP client library at start-up, for its
exception types; the ``mcp`` package's ``__init__`` then imports its whole client
and server (a web framework included): about a third of the SDK's import, for a
protocol memchat does not use. Deferred, that ``__init__`` runs the first time
anything reads a name from the package itself, so code that does use it still gets
the whole package.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any


def defer_init(name: str) -> None:
    """Let ``name``'s submodules import without its ``__init__``; a name read from it runs the ``__init__``."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    running = threading.Lock()

    def complete(attribute: str) -> Any:
        # Another thread may be running the __init__: it then waits for the whole package.
        with running:
            if package.__dict__.get("__getattr__") is complete:
                # Gone first, so a name the __init__ reads before defining it fails as it always would.
                del package.__dict__["__getattr__"]
                loader.exec_module(package)
        return getattr(package, attribute)

    package.__dict__["__getattr__"] = complete
    sys.modules[name] = package
