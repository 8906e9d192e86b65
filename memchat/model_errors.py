"""Turning a failed model call into one line a person can act on."""

from __future__ import annotations

import openai

from config import Settings

MAX_SERVER_TEXT = 200


def describe_model_error(exc: BaseException, settings: Settings) -> str:
    """One line naming the cause and the fix; never the API key, never a traceback."""
    where = settings.base_url or "the OpenAI API"
    retried = f" after {settings.retries} retries" if settings.retries else ""
    server_text = _server_text(exc, settings)
    if isinstance(exc, openai.AuthenticationError):
        message = f"{where} refused the API key (401): check OPENAI_API_KEY"
    elif isinstance(exc, openai.PermissionDeniedError):
        message = f"the API key may not use model {settings.model!r} (403): check the key's access or pass --model"
    elif isinstance(exc, openai.NotFoundError):
        message = (
            f"model {settings.model!r} was not found at {where} (404): pass --model with a model the server serves"
        )
    elif isinstance(exc, openai.RateLimitError):
        message = f"{where} is rate limiting or out of quota (429){retried}: wait a moment and send again"
    elif isinstance(exc, openai.BadRequestError) and _is_context_overflow(exc):
        message = f"the conversation is too long for model {settings.model!r}: /undo or /clear, or use a model with a longer context"
    elif isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        message = f"{where} failed with {exc.status_code}{retried}: try again later ({server_text})"
    elif isinstance(exc, openai.APIStatusError):
        message = f"{where} rejected the request ({exc.status_code}: {server_text}): check --model and MEMCHAT_API"
    elif isinstance(exc, openai.APITimeoutError):
        message = f"no answer from {where} within {settings.timeout:g} s: try again, or raise MEMCHAT_TIMEOUT"
    elif isinstance(exc, openai.APIConnectionError):
        message = f"lost or could not open the connection to {where}: check OPENAI_BASE_URL and that the server is up, then send again"
    else:
        message = f"the model call failed ({type(exc).__name__}: {server_text}): send again, or report this as a bug"
    return redact(message, settings)


def describe_failed_turn(exc: BaseException, settings: Settings) -> str:
    """The one line shown when a turn's model call fails, in the terminal and on the web page alike."""
    return describe_model_error(exc, settings) + " (nothing was saved)"


def redact(text: str, settings: Settings) -> str:
    """Remove the API key from text that may echo it back."""
    if settings.api_key:
        text = text.replace(settings.api_key, "***")
    return " ".join(text.split())


def _server_text(exc: BaseException, settings: Settings) -> str:
    text = str((getattr(exc, "body", None) and _body_message(exc)) or exc) or type(exc).__name__
    text = redact(text, settings)
    return text if len(text) <= MAX_SERVER_TEXT else text[: MAX_SERVER_TEXT - 1] + "…"


def _body_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


def _is_context_overflow(exc: openai.BadRequestError) -> bool:
    text = f"{exc.code or ''} {exc}".lower()
    return "context_length_exceeded" in text or "context length" in text or "too many tokens" in text
