"""Loading the Agents SDK: once, aside from the prompt, and without what memchat never uses.

The import is over a second of CPU, the bulk of a one-shot turn's, so the terminal
starts it in the background while the user types (see bench/startup.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import sys
import threading
from typing import Any

_model_code_loaded = threading.Event()
_loading = threading.Lock()


def load_model_code() -> None:
    """Import the Agents SDK (and with it openai): over a second of CPU, the bulk of a one-shot turn's.

    The garbage collector is kept out of it: the import makes hundreds of thousands of
    objects that live as long as the process, and collecting among them while they are
    made, and again at exit, costs about a quarter more CPU (see bench/startup.py).

    The SDK reads one module of the MCP client library at import, for its exception
    types; the ``mcp`` package's own ``__init__`` would bring in its whole client and
    server, a web framework included: a third of the import, for a protocol memchat
    does not use. So that ``__init__`` waits until a name is read from the package.
    """
    with _loading:
        if _model_code_loaded.is_set():
            return
        gc.disable()
        try:
            defer_package_init("mcp")
            importlib.import_module("memchat.turn")
        finally:
            gc.freeze()
            gc.enable()
            _model_code_loaded.set()


def model_code_loaded() -> bool:
    return _model_code_loaded.is_set()


async def load_model_code_aside() -> None:
    """``load_model_code`` in a daemon thread, awaited: the event loop stays free meanwhile.

    So a spinner turns and Ctrl-C cancels at once; and, unlike ``asyncio.to_thread``,
    whose threads an exit waits for, leaving does not wait for the import to finish.
    """
    if model_code_loaded():
        return
    loop = asyncio.get_running_loop()
    loaded: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if loaded.done():
            return
        if error is None:
            loaded.set_result(None)
        else:
            loaded.set_exception(error)

    def load() -> None:
        error: BaseException | None = None
        try:
            load_model_code()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine, which raises it
            error = exc
        # The loop is gone if the program left while this loaded: nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=load, name="memchat-load", daemon=True).start()
    await loaded


def defer_package_init(name: str) -> None:
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
