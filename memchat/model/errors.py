"""Turning a failed model call into one line a person can act on."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import openai

from config import Settings

MAX_SERVER_TEXT = 200
# A key this short (``x``, ``local``, ``ollama``...) is a placeholder for a local server, not a secret:
# masking it would garble memchat's own words ("conte***t").
MIN_SECRET_LENGTH = 8

# How servers say how much context they hold: llama-server, OpenAI, vLLM and others.
CONTEXT_SIZE = (
    re.compile(r"available context size \((\d+) tokens?\)", re.IGNORECASE),
    re.compile(r"maximum context length is (\d+) tokens?", re.IGNORECASE),
    re.compile(r"context (?:window|length|size) (?:is|of) (\d+)(?: tokens?)?", re.IGNORECASE),
)
OVERFLOW_CODES = ("context_length_exceeded", "exceed_context_size_error")
OVERFLOW_TEXT = ("context length", "context size", "context window", "too many tokens", "maximum context")


class EmptyReplyError(Exception):
    """The server answered, but with no message: some local servers do this instead of saying the context is full."""


def describe_model_error(exc: BaseException, settings: Settings) -> str:
    """One line naming the cause and the fix; never the API key, never a traceback."""
    where = settings.base_url or "the OpenAI API"
    retried = f" after {settings.retries} retries" if settings.retries else ""
    server_text = _server_text(exc, settings)
    if isinstance(exc, EmptyReplyError):
        return (
            f"{where} sent an empty reply; local servers do this when the conversation no longer fits their "
            f"context: set MEMCHAT_CONTEXT_TOKENS below the server's context size (now {settings.context_tokens}), "
            "or /clear"
        )
    if isinstance(exc, openai.AuthenticationError):
        return f"{where} refused the API key (401): check OPENAI_API_KEY"
    if isinstance(exc, openai.PermissionDeniedError):
        return f"the API key may not use model {settings.model!r} (403): check the key's access or pass --model"
    if isinstance(exc, openai.NotFoundError):
        if settings.base_url and "/v1" not in urlsplit(settings.base_url).path and "model" not in server_text.lower():
            return (
                f"{where} has no such API (404): OpenAI-compatible servers answer under /v1: "
                f"try OPENAI_BASE_URL={settings.base_url.rstrip('/')}/v1"
            )
        return f"model {settings.model!r} was not found at {where} (404): pass --model with a model the server serves"
    if isinstance(exc, openai.RateLimitError):
        return f"{where} is rate limiting or out of quota (429){retried}: wait a moment and send again"
    if is_context_overflow(exc):
        size = server_context_size(exc)
        held = f" (it holds {size} tokens)" if size else ""
        return (
            f"the conversation is too long for model {settings.model!r}{held}: set MEMCHAT_CONTEXT_TOKENS lower "
            f"(now {settings.context_tokens}), or /undo or /clear"
        )
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return f"{where} failed with {exc.status_code}{retried}: try again later ({server_text})"
    if isinstance(exc, openai.APIStatusError):
        return f"{where} rejected the request ({exc.status_code}: {server_text}): check --model and MEMCHAT_API"
    if isinstance(exc, openai.APITimeoutError):
        return f"no answer from {where} within {settings.timeout:g} s: try again, or raise MEMCHAT_TIMEOUT"
    if isinstance(exc, openai.APIConnectionError):
        return f"lost or could not open the connection to {where}: check OPENAI_BASE_URL and that the server is up, then send again"
    return f"the model call failed ({type(exc).__name__}: {server_text}): send again, or report this as a bug"


def describe_failed_turn(exc: BaseException, settings: Settings) -> str:
    """The one line shown when a turn's model call fails, in the terminal and on the web page alike."""
    return describe_model_error(exc, settings) + " (nothing was saved)"


def is_context_overflow(exc: BaseException) -> bool:
    """True when the server refused the request for being longer than its context."""
    if not isinstance(exc, openai.BadRequestError):
        return False
    body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
    kind = f"{exc.code or ''} {body.get('type', '') if isinstance(body, dict) else ''}"
    text = str(exc).lower()
    return any(code in kind or code in text for code in OVERFLOW_CODES) or any(words in text for words in OVERFLOW_TEXT)


def server_context_size(exc: BaseException) -> int | None:
    """The context size a server named in its overflow error, if it did."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("n_ctx"), int):
        return int(error["n_ctx"])
    for pattern in CONTEXT_SIZE:
        match = pattern.search(str(exc))
        if match:
            return int(match.group(1))
    return None


def hide_key(text: str, settings: Settings) -> str:
    """Remove the API key from text that came from outside (a server may echo it back); fold white space."""
    if settings.api_key and len(settings.api_key) >= MIN_SECRET_LENGTH:
        text = text.replace(settings.api_key, "***")
    return " ".join(text.split())


def _server_text(exc: BaseException, settings: Settings) -> str:
    text = str((getattr(exc, "body", None) and _body_message(exc)) or exc) or type(exc).__name__
    text = hide_key(text, settings)
    return text if len(text) <= MAX_SERVER_TEXT else text[: MAX_SERVER_TEXT - 1] + "…"


def _body_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)
