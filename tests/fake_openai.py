"""A small OpenAI-compatible HTTP server for tests and the benchmark.

It speaks Chat Completions and the Responses API, streamed (SSE) and not, so the
real ``openai`` client and the SDK's parsers are exercised end to end. It keeps no
memory of its own: every answer is derived from the conversation in the request,
so "what's my name?" is answered correctly only if the client sent the history.

Faults are asked for with markers inside the last user message:

- ``[[status:NNN]]`` answer with HTTP status NNN (429 carries ``Retry-After: 0``)
- ``[[busy:N]]``     answer the first N requests for this message with 429 and ``Retry-After: 1``
- ``[[context]]``    answer 400 ``context_length_exceeded``
- ``[[slow]]``       stream the reply one word every 0.3 s
- ``[[hang]]``       accept the request and never answer
- ``[[reset]]``      send part of a reply, then drop the connection
- ``[[empty]]``      answer 200 with no message (an empty event stream when streamed), as llama-cpp-python
                     does when the conversation outgrows its context
- ``[[endless]]``    a model that never stops: as many words as ``max_tokens`` allows (20,000 without it)
- ``[[markdown]]``   a reply in Markdown: a heading, bold, a list, a table and two code blocks
- ``[[nth]]``        "answer N", N counting the requests for this message (a retry gets a new answer)
- ``[[lookup:WORD]]`` with tools in the request (Chat Completions): call the ``search_memory`` tool for WORD,
                     then, given its output, answer "From memory: OUTPUT"
- ``[[tool:NAME:JSON]]`` with tool NAME in the request (Chat Completions): call it with the JSON object as
                     its arguments, then, given its output, answer "Tool said: OUTPUT" (its first 300 characters)

Behaviours of real servers, by option:

- ``context_size=N`` a request over N tokens is refused as ``overflow`` says: ``"llama-server"`` (400
                     with its ``exceed_context_size_error`` body and ``n_ctx``), ``"openai"`` (400
                     ``context_length_exceeded`` naming the maximum), or ``"empty"`` (200, no message)
- ``no_stream_options=True`` refuse ``stream_options`` with 400, as some older servers do
- usage in a Chat Completions stream only when the request asks (``stream_options.include_usage``)
- a tool call without its output, or an output without its call, is refused with 400, as OpenAI does
- ``alternating=True`` two user messages in a row are refused with 400, as llama.cpp's chat templates do
- ``no_tools=True`` a request with tools is refused with 400, as ``llama-server`` without ``--jinja`` does
- ``no_images=True`` a request with an image is refused with 400, as OpenAI does for a model without vision

``first_token_delay=S`` makes every chat answer begin S seconds after its request, as a model that
thinks would (the web load benchmark subtracts it from the time to first token).

``/v1/embeddings`` embeds each text as a bag of its words, with a few words read as the same
meaning (car and vehicle, sister and sibling...), so a paraphrase that shares no word with a
stored message is still near it. ``embedding_status=NNN`` answers NNN instead, and
``embedding_delay=S`` answers after S seconds; both can change while the server runs.
``embedding_serial=True`` embeds one request at a time, as many embedding servers do.

A request whose instructions ask what "lasting facts about a user" to keep gets ``SAVE: TEXT`` for each
``[[fact:TEXT]]`` in the exchange it is shown (``NOTHING`` without one).

A request whose instructions ask to "Update the memory summary" gets a summary
of the "my name is" facts it contains (or a 500 with ``fail_summaries=True``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAME_FACT = re.compile(r"my name is (\w+)", re.IGNORECASE)
NAME_QUESTION = re.compile(r"what(?:'s| is) my name", re.IGNORECASE)
STATUS_MARK = re.compile(r"\[\[status:(\d{3})\]\]")
BUSY_MARK = re.compile(r"\[\[busy:(\d+)\]\]")


def text_of(content: Any) -> str:
    """Flatten a message's content (a string or a list of parts) to plain text; an image is ``[image TYPE, N bytes]``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(image_of(part) or str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def image_of(part: dict[str, Any]) -> str:
    """An image part (Chat Completions' ``image_url``, Responses' ``input_image``) said as text; "" for others."""
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if part.get("type") not in ("image_url", "input_image") or not isinstance(url, str):
        return ""
    header, _, data = url.partition(",")
    return f"[image {header.removeprefix('data:').removesuffix(';base64')}, {len(base64.b64decode(data))} bytes]"


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) pairs of a Chat Completions or Responses request, in order."""
    pairs: list[tuple[str, str]] = []
    if body.get("instructions"):
        pairs.append(("system", str(body["instructions"])))
    items = body.get("messages")
    if items is None:
        raw = body.get("input", [])
        items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    for item in items:
        if isinstance(item, dict) and "role" in item:
            pairs.append((str(item["role"]), text_of(item.get("content"))))
    return pairs


def is_summary_request(pairs: list[tuple[str, str]]) -> bool:
    return any("Update the memory summary" in text for role, text in pairs if role in ("system", "developer"))


FACT_MARK = re.compile(r"\[\[fact:([^\]]+)\]\]")


def answer(pairs: list[tuple[str, str]]) -> str:
    """The reply a stateless model would give to this conversation."""
    if any("lasting facts about a user" in text for role, text in pairs if role in ("system", "developer")):
        # Asked what of an exchange to keep: what the user marked ``[[fact:TEXT]]``, as a model would pick out.
        exchange = pairs[-1][1].split("New exchange:", 1)[-1]
        return "\n".join(f"SAVE: {fact}" for fact in FACT_MARK.findall(exchange)) or "NOTHING"
    if is_summary_request(pairs):
        # Keep the latest "my name is" fact, as a model asked for a summary would.
        names = NAME_FACT.findall(" ".join(text for _, text in pairs))
        return f"The user said: my name is {names[-1]}." if names else "Nothing notable yet."
    users = [text for role, text in pairs if role == "user"]
    last = users[-1] if users else ""
    if NAME_QUESTION.search(last):
        # Any earlier text counts: a summary in the instructions carries facts too.
        for _, text in reversed(pairs[:-1]):
            match = NAME_FACT.search(text)
            if match:
                return f"Your name is {match.group(1)}."
        return "I don't know your name yet."
    cleaned = re.sub(r"\[\[[a-z:0-9]+\]\]", "", last).strip()
    return f"You said: {cleaned}"


MARKDOWN_REPLY = """# Plan

Here is **the plan** in three steps:

1. read the file
2. count the words
3. print the total

| step | tool |
| ---- | ---- |
| read | open |

```python
print("hello from block one")
```

```sh
echo block-two
```
"""


def malformed(body: dict[str, Any], *, alternating: bool) -> str | None:
    """What a real server refuses in a Chat Completions history, in its words; None if it takes it."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    called: set[str] = set()
    answered: set[str] = set()
    previous = None
    for message in messages:
        role = message.get("role")
        for call in message.get("tool_calls") or []:
            called.add(call.get("id"))
        if role == "tool":
            if message.get("tool_call_id") not in called:
                return "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
            answered.add(message.get("tool_call_id"))
        if alternating and role == "user" and previous == "user":
            return "Conversation roles must alternate user/assistant/user/assistant/..."
        previous = role
    if called - answered:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {sorted(called - answered)[0]}"
        )
    return None


LOOKUP_MARK = re.compile(r"\[\[lookup:(\w+)\]\]")
TOOL_MARK = re.compile(r"\[\[tool:(\w+):(\{.*?\})\]\]")


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def roles(self) -> list[str]:
        return [role for role, _ in conversation(self.body) if role not in ("system", "developer")]


@dataclass
class FakeOpenAI:
    """The server; ``with FakeOpenAI() as server:`` runs it on a free loopback port."""

    api_key: str | None = None
    port: int = 0
    fail_summaries: bool = False
    requests: list[Recorded] = field(default_factory=list)
    word_delay: float = 0.0
    context_size: int | None = None
    overflow: str = "llama-server"
    no_stream_options: bool = False
    alternating: bool = False
    no_tools: bool = False
    # Refuse images, as a model without vision does.
    no_images: bool = False
    embedding_status: int | None = None
    embedding_delay: float = 0.0
    # One embedding request at a time, as llama-server and a single-worker embedding server do.
    embedding_serial: bool = False
    # Seconds before each chat answer begins, as a real model thinks: the load benchmark subtracts it.
    first_token_delay: float = 0.0
    # How many requests each message has made, for ``[[busy:N]]``.
    attempts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._embedding_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = _QuietServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that leaves mid-reply (a stopped turn, a dropped proxy) is what the tests do on
        # purpose; its traceback in the log only hid real failures.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this the body waits for the client's
        # delayed acknowledgement (about 40 ms), and a benchmark would time the test server, not memchat.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    # -- plumbing -------------------------------------------------------------
    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"Retry-After": "0"} if status == 429 else None
        error = {"message": message, "type": "invalid_request_error", "code": code, "param": None}
        self._send_json(status, {"error": error}, headers)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _sse(self, payload: dict[str, Any], event: str | None = None) -> None:
        prefix = f"event: {event}\n" if event else ""
        self.wfile.write(f"{prefix}data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: a true mid-stream connection reset.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()
        # And no waiting for another request on it: the handler ends, and the socket really closes.
        self.close_connection = True

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.startswith("/v1/"):
            # Like real servers: the API lives under /v1 only.
            self._error(404, "Not Found")
            return
        state = self.server_state
        state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
        if self.path.endswith("/embeddings"):
            self._embeddings(body)
            return

        if state.api_key is not None and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            # Real servers echo (part of) the key back; memchat must never print it.
            self._error(401, f"Incorrect API key provided: {given}.", "invalid_api_key")
            return

        if state.no_tools and body.get("tools"):
            self._error(400, "tools param requires --jinja flag")
            return
        if state.no_images and "[image " in json.dumps([text_of(m.get("content")) for m in body.get("messages") or []]):
            # What OpenAI answers when a model without vision is sent an image.
            self._error(400, "Invalid content type. image_url is only supported by certain models.")
            return
        broken = malformed(body, alternating=state.alternating)
        if broken:
            self._error(400, broken)
            return
        pairs = conversation(body)
        if state.fail_summaries and is_summary_request(pairs):
            self._error(500, "simulated summary failure")
            return
        last = next((text for role, text in reversed(pairs) if role == "user"), "")
        status = STATUS_MARK.search(last)
        if status:
            self._error(int(status.group(1)), f"simulated status {status.group(1)}")
            return
        busy = BUSY_MARK.search(last)
        if busy:
            state.attempts[last] = state.attempts.get(last, 0) + 1
            if state.attempts[last] <= int(busy.group(1)):
                self._send_json(429, {"error": {"message": "slow down", "code": "rate_limit"}}, {"Retry-After": "1"})
                return
        if "[[context]]" in last:
            self._error(400, "This model's maximum context length is exceeded.", "context_length_exceeded")
            return
        if "[[hang]]" in last:
            state._stop.wait(120)
            return
        if state.no_stream_options and "stream_options" in body:
            self._error(400, "Unrecognized request argument supplied: stream_options")
            return
        tokens = request_tokens(body)
        if "[[empty]]" in last or (state.context_size and tokens > state.context_size and state.overflow == "empty"):
            self._empty(body)
            return
        if state.context_size and tokens > state.context_size:
            self._overflow(tokens, state.context_size, state.overflow)
            return

        words = answer(pairs).split(" ")
        messages = body.get("messages") or []
        lookup = LOOKUP_MARK.search(last)
        if lookup and self.path.endswith("/chat/completions") and body.get("tools"):
            if messages and messages[-1].get("role") == "tool":
                words = f"From memory: {messages[-1].get('content', '')}".split(" ")
            else:
                self._tool_call(body, str(body.get("model", "fake-model")), "search_memory", {"query": lookup.group(1)})
                return
        wanted = TOOL_MARK.search(last)
        offered = {tool.get("function", {}).get("name") for tool in body.get("tools") or []}
        if wanted and self.path.endswith("/chat/completions") and wanted.group(1) in offered:
            if messages and messages[-1].get("role") == "tool":
                said = str(messages[-1].get("content", ""))
                # A model answers from a long result; it does not repeat it whole.
                words = f"Tool said: {said if len(said) <= 300 else said[:300] + ' …'}".split(" ")
            else:
                self._tool_call(
                    body, str(body.get("model", "fake-model")), wanted.group(1), json.loads(wanted.group(2))
                )
                return
        if "[[markdown]]" in last:
            words = MARKDOWN_REPLY.split(" ")
        if "[[nth]]" in last:
            state.attempts[last] = state.attempts.get(last, 0) + 1
            words = ["answer", str(state.attempts[last])]
        if "[[endless]]" in last:
            limit = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens")
            words = ["la"] * int(limit or 20_000)
        delay = 0.3 if "[[slow]]" in last else state.word_delay
        reset = "[[reset]]" in last
        if state.first_token_delay:
            state._stop.wait(state.first_token_delay)
        model = str(body.get("model", "fake-model"))
        if self.path.endswith("/chat/completions"):
            self._chat(body, model, words, delay, reset)
        elif self.path.endswith("/responses"):
            self._responses(body, model, words, delay, reset)
        else:
            self._error(404, f"no route {self.path}")

    def _embeddings(self, body: dict[str, Any]) -> None:
        state = self.server_state
        with state._embedding_lock if state.embedding_serial else contextlib.nullcontext():
            if state.embedding_delay:
                state._stop.wait(state.embedding_delay)
            self._embedded(body)

    def _embedded(self, body: dict[str, Any]) -> None:
        state = self.server_state
        if state.embedding_status is not None:
            self._error(state.embedding_status, f"simulated embedding status {state.embedding_status}")
            return
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(text, str) and text for text in texts):
            self._error(400, "input must be a non-empty string or list of non-empty strings")
            return
        model = str(body.get("model") or "")
        data = [{"object": "embedding", "index": n, "embedding": meaning(text, model)} for n, text in enumerate(texts)]
        usage = {"prompt_tokens": sum(len(text) // 4 for text in texts), "total_tokens": 0}
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    def _empty(self, body: dict[str, Any]) -> None:
        if body.get("stream"):
            self._start_sse()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": str(body.get("model", "fake-model"))}
        self._send_json(200, {**base, "object": "chat.completion", "choices": []})

    def _overflow(self, tokens: int, size: int, style: str) -> None:
        if style == "llama-server":
            message = f"request ({tokens} tokens) exceeds the available context size ({size} tokens), try increasing it"
            error = {
                "code": 400,
                "message": message,
                "type": "exceed_context_size_error",
                "n_prompt_tokens": tokens,
                "n_ctx": size,
            }
            self._send_json(400, {"error": error})
        else:
            self._error(
                400,
                f"This model's maximum context length is {size} tokens. However, your messages resulted in {tokens} tokens.",
                "context_length_exceeded",
            )

    # -- Chat Completions -----------------------------------------------------
    def _chat(self, body: dict[str, Any], model: str, words: list[str], delay: float, reset: bool) -> None:
        text = " ".join(words)
        usage = {
            "prompt_tokens": request_tokens(body),
            "completion_tokens": len(words),
            "total_tokens": request_tokens(body) + len(words),
        }
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            time.sleep(delay * len(words))
            if reset:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "4096")
                self.end_headers()
                self.wfile.write(b'{"id": "chatcmpl-fake", "choices": [')
                self._reset()
                return
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        self._start_sse()
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            self._sse(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
            )
            if reset and index == len(words) // 2:
                self._reset()
                return
            time.sleep(delay)
        final = {"index": 0, "delta": {}, "finish_reason": "stop"}
        self._sse({**base, "object": "chat.completion.chunk", "choices": [final]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _tool_call(self, body: dict[str, Any], model: str, name: str, arguments: dict[str, Any]) -> None:
        call = {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            self._send_json(200, {**base, "object": "chat.completion", "choices": [choice]})
            return
        self._start_sse()
        delta = {"role": "assistant", "tool_calls": [{"index": 0, **call}]}
        self._sse(
            {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
        done = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
        self._sse({**base, "object": "chat.completion.chunk", "choices": [done]})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # -- Responses API --------------------------------------------------------
    def _responses(self, body: dict[str, Any], model: str, words: list[str], delay: float, reset: bool) -> None:
        text = " ".join(words)
        tokens_in = request_tokens(body)
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
        response = {
            "id": "resp_fake",
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "completed",
            "output": [message],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": tokens_in,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": len(words),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": tokens_in + len(words),
            },
        }
        if not body.get("stream"):
            time.sleep(delay * len(words))
            self._send_json(200, response)
            return
        self._start_sse()
        seq = iter(range(1_000_000))
        empty = {**message, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
        self._sse(
            {"type": "response.created", "response": in_progress, "sequence_number": next(seq)}, "response.created"
        )
        self._sse(
            {"type": "response.output_item.added", "output_index": 0, "item": empty, "sequence_number": next(seq)},
            "response.output_item.added",
        )
        self._sse(
            {
                "type": "response.content_part.added",
                "item_id": "msg_fake",
                "output_index": 0,
                "content_index": 0,
                "part": part,
                "sequence_number": next(seq),
            },
            "response.content_part.added",
        )
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            self._sse(
                {
                    "type": "response.output_text.delta",
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                    "sequence_number": next(seq),
                },
                "response.output_text.delta",
            )
            if reset and index == len(words) // 2:
                self._reset()
                return
            time.sleep(delay)
        self._sse(
            {
                "type": "response.output_text.done",
                "item_id": "msg_fake",
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
                "sequence_number": next(seq),
            },
            "response.output_text.done",
        )
        self._sse(
            {
                "type": "response.content_part.done",
                "item_id": "msg_fake",
                "output_index": 0,
                "content_index": 0,
                "part": {**part, "text": text},
                "sequence_number": next(seq),
            },
            "response.content_part.done",
        )
        self._sse(
            {"type": "response.output_item.done", "output_index": 0, "item": message, "sequence_number": next(seq)},
            "response.output_item.done",
        )
        self._sse(
            {"type": "response.completed", "response": response, "sequence_number": next(seq)}, "response.completed"
        )


# Words the fake embedding model reads as one meaning; any other word means itself.
SAME_MEANING = {
    "car": "vehicle",
    "automobile": "vehicle",
    "vehicle": "vehicle",
    "volvo": "vehicle",
    "drive": "vehicle",
    "sister": "sibling",
    "brother": "sibling",
    "sibling": "sibling",
    "dog": "pet",
    "puppy": "pet",
    "cat": "pet",
    "pet": "pet",
    "allergic": "allergy",
    "allergy": "allergy",
    "peanuts": "allergy",
    "job": "work",
    "work": "work",
    "employer": "work",
    "engineer": "work",
    "greyhound": "pet",
    "called": "name",
    "name": "name",
    "violin": "music",
    "music": "music",
    "lessons": "teach",
    "teaches": "teach",
    "daughter": "child",
    "child": "child",
    "shellfish": "seafood",
    "prawns": "seafood",
    "seafood": "seafood",
}
EMBEDDING_SIZE = 256
FILLER = {"a", "an", "the", "is", "my", "i", "do", "what", "of", "to", "in", "and", "you", "said", "own", "have"}


def meaning(text: str, model: str = "") -> list[float]:
    """A deterministic embedding: the meanings of the words, hashed into a few dimensions.

    A model named ``...-dense-N`` (``fake-dense-1536``) gives N numbers instead, every one of them
    used, as a real model's are: each meaning is a fixed random direction, and a text the sum of its
    meanings' directions.
    """
    import zlib

    meanings = [SAME_MEANING.get(word, word) for word in re.findall(r"\w+", text.lower()) if word not in FILLER]
    if dense := re.search(r"-dense-(\d+)$", model):
        size = int(dense.group(1))
        total = [0.0] * size
        for word in meanings or ["nothing"]:
            total = [a + b for a, b in zip(total, direction(word, size), strict=True)]
        return total
    vector = [0.0] * EMBEDDING_SIZE
    for word in meanings:
        vector[zlib.crc32(word.encode()) % EMBEDDING_SIZE] += 1.0
    return vector if any(vector) else [1.0] + [0.0] * (EMBEDDING_SIZE - 1)


@functools.lru_cache(maxsize=65536)
def direction(word: str, size: int) -> tuple[float, ...]:
    """A meaning's fixed random direction in ``size`` numbers (the same in every run)."""
    import random
    import zlib

    chance = random.Random(zlib.crc32(word.encode()))
    return tuple(chance.gauss(0.0, 1.0) for _ in range(size))


def request_tokens(body: dict[str, Any]) -> int:
    """A rough token count of the request (4 characters a token), tools included, like a real server reports."""
    return max(1, len(json.dumps([body.get("messages") or body.get("input") or "", body.get("tools") or []])) // 4)


if __name__ == "__main__":
    # Run by hand to try memchat against it: python tests/fake_openai.py [PORT]
    with FakeOpenAI(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0) as server:
        print(f"OPENAI_BASE_URL={server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
