"""The raw chat APIs a generator is reached through (OpenAI-compatible servers, Anthropic), with retry
classification and rate limits. A plain if picks the class: no registry for two wire formats.

May import: config, models.store (the shape of a reply's log-probabilities).
"""

from __future__ import annotations

from agorabench.config import GeneratorConfig


def make_chat_api(name: str, cfg: GeneratorConfig, *, base_url: str | None = None, model: str | None = None):
    """The raw chat API for a generator. `base_url`/`model` override the config (local servers)."""
    model = model or cfg.model
    base_url = base_url or cfg.base_url
    if cfg.backend in ("openai", "local"):
        from agorabench.models.clients.openai_chat import OpenAIChat

        return OpenAIChat(model=model, base_url=base_url, api_key=cfg.api_key(name), timeout_s=cfg.timeout_s)
    if cfg.backend == "anthropic":
        from agorabench.models.clients.anthropic_chat import AnthropicChat

        return AnthropicChat(model=model, base_url=base_url, api_key=cfg.api_key(name), timeout_s=cfg.timeout_s)
    raise ValueError(f"unknown backend {cfg.backend!r}")
