"""The HTTP client of the configured model server, for chat and embeddings alike."""

from __future__ import annotations

from openai import AsyncOpenAI

from config import Settings

# Servers such as Ollama need no key, but the client insists on one.
PLACEHOLDER_KEY = "not-needed"


def build_client(settings: Settings) -> AsyncOpenAI:
    """A client of the configured server, with memchat's timeout and retries."""
    return AsyncOpenAI(
        api_key=settings.api_key or PLACEHOLDER_KEY,
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_retries=settings.retries,
    )
