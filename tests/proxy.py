"""A TCP proxy on 127.0.0.1 that puts real network faults between memchat and a server.

``with FaultProxy(6379) as proxy:`` forwards a free local port to the server;
then, at any moment:

- ``proxy.drop()``            close every open connection (a server restart, a NAT timeout)
- ``proxy.refuse()``          close them and refuse new ones until ``proxy.accept()`` (the server is down)
- ``proxy.stall()``           keep connections open but forward nothing until ``proxy.flow()`` (a hung server)
- ``proxy.drop_after(b"EXEC")`` close the connection right after the client sends those bytes: the
                              server gets the command, the client never hears the answer
- ``proxy.drop_before(b"EXEC")`` close it instead of forwarding them: the command never arrives
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class FaultProxy:
    target_port: int
    target_host: str = "127.0.0.1"
    _links: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._trigger: tuple[bytes, bool] | None = None
        # Server sockets whose answers are thrown away: the client must never hear them.
        self._muted: set[socket.socket] = set()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, scheme_and_auth: str, path: str = "") -> str:
        """``redis://`` + ``127.0.0.1:PORT`` + path, for example."""
        return f"{scheme_and_auth}127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._flowing.set()
        self.drop()
        self._listener.close()

    # -- faults ----------------------------------------------------------------
    def drop(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for client, server in links:
            for sock in (client, server):
                _hard_close(sock)

    def refuse(self) -> None:
        self._refusing = True
        self.drop()

    def accept(self) -> None:
        self._refusing = False

    def stall(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def drop_after(self, marker: bytes) -> None:
        self._trigger = (marker, True)

    def drop_before(self, marker: bytes) -> None:
        self._trigger = (marker, False)

    # -- plumbing --------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                _hard_close(client)
                continue
            try:
                server = socket.create_connection((self.target_host, self.target_port), timeout=5)
            except OSError:
                _hard_close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._links.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                trigger = self._trigger
                if upstream and trigger is not None and trigger[0] in data:
                    self._trigger = None
                    self._muted.add(sink)
                    if trigger[1]:
                        sink.sendall(data)
                        time.sleep(0.3)  # the server acts on it; only its answer is lost
                    self._close_link(source)
                    return
                if not upstream and source in self._muted:
                    continue
                sink.sendall(data)
        except OSError:
            pass
        self._close_link(source)

    def _close_link(self, sock: socket.socket) -> None:
        with self._lock:
            found = [link for link in self._links if sock in link]
            self._links = [link for link in self._links if sock not in link]
        for link in found:
            for end in link:
                _hard_close(end)


def _hard_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
