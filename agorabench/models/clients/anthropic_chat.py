"""Anthropic's Messages API through the official SDK."""
from __future__ import annotations

import anthropic


class AnthropicChat:
    def __init__(self, *, model: str, base_url: str | None, api_key: str, timeout_s: float):
        self.model = model
        self.client = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    async def chat(self, messages: list[dict], sampling: dict) -> tuple[str, str | None, int, int, None]:
        # The Messages API takes the system prompt as a field of its own, and calls stop strings
        # `stop_sequences`.
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        kwargs = {"max_tokens": sampling.get("max_tokens", 1024)}
        # SDK 2.x dropped temperature/top_p/top_k from create()'s signature (recent models fix
        # them); older models still accept them in the body, so they travel as extra_body.
        extra = {k: sampling[k] for k in ("temperature", "top_p", "top_k") if sampling.get(k) is not None}
        if extra:
            kwargs["extra_body"] = extra
        if sampling.get("stop"):
            kwargs["stop_sequences"] = list(sampling["stop"])
        if system:
            kwargs["system"] = system
        resp = await self.client.messages.create(model=self.model, messages=turns, **kwargs)
        text = "".join(block.text for block in resp.content if getattr(block, "type", "") == "text")
        # The Messages API has no log-probabilities: a judge is read from its text (EndpointAnswerer
        # never asks this backend for them).
        return text, resp.stop_reason, resp.usage.input_tokens, resp.usage.output_tokens, None

    async def close(self) -> None:
        await self.client.close()
