"""Building the SDK agent that talks to the configured model server.

Importing this module loads the Agents SDK (seconds on a small machine), so
nothing on the start-up path imports it directly: the terminal loads it in the
background while the user types.
"""

from __future__ import annotations

import logging

from agents import (
    Agent,
    Model,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    set_tracing_disabled,
    set_tracing_export_api_key,
)
from openai import AsyncOpenAI

from config import Settings
from memchat.model.client import build_client


def build_agent(settings: Settings, model: Model | None = None, client: AsyncOpenAI | None = None) -> Agent[None]:
    """The memchat agent for these settings, on ``client`` (or a new one).

    ``model`` replaces the configured server, for tests that script the model.
    """
    # memchat reports failures itself, as one line; the SDK's own logging would add tracebacks.
    logging.getLogger("openai.agents").disabled = True
    logging.getLogger("openai").disabled = True
    set_tracing_disabled(not settings.tracing)
    if settings.tracing and settings.api_key:
        set_tracing_export_api_key(settings.api_key)
    # Streams report token usage only when asked (the SDK asks only OpenAI itself); the counts calibrate the budget.
    model_settings = ModelSettings(
        max_tokens=settings.max_tokens, include_usage=True if settings.api == "chat_completions" else None
    )
    if model is not None:
        return Agent(name="memchat", instructions=settings.instructions, model=model, model_settings=model_settings)
    # A Model instance, not a name: the SDK would read "org/model" as a provider prefix.
    model_class = OpenAIChatCompletionsModel if settings.api == "chat_completions" else OpenAIResponsesModel
    served = model_class(model=settings.model, openai_client=client or build_client(settings))
    return Agent(name="memchat", instructions=settings.instructions, model=served, model_settings=model_settings)


def run_config(settings: Settings) -> RunConfig:
    return RunConfig(tracing_disabled=not settings.tracing, workflow_name="memchat")
