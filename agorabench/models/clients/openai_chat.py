"""Any OpenAI-compatible chat endpoint: OpenAI, `vllm serve`, `transformers serve`, llama.cpp server."""
from __future__ import annotations

import openai
from openai.types.chat import ChatCompletion

from agorabench.models.store import token_logprobs


class OpenAIChat:
    def __init__(self, *, model: str, base_url: str | None, api_key: str, timeout_s: float):
        # max_retries=0: retries, backoff and Retry-After are ours (EndpointAnswerer), so that every
        # attempt is counted and logged, and the SDK's own retries do not multiply ours.
        self.model = model
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    async def chat(self, messages: list[dict], sampling: dict) -> tuple[str, str | None, int, int, tuple | None]:
        """(text, finish reason, prompt tokens, completion tokens, token logprobs or None)."""
        body = {"model": self.model, "messages": messages, **{k: v for k, v in sampling.items() if v is not None}}
        # The SDK's documented `post` rather than `chat.completions.create`: the same request, auth,
        # errors and parsed ChatCompletion, without create()'s pass that walks every message against
        # the typed-dict schema (a no-op for plain text messages, and a fifth of the client's CPU at
        # hundreds of requests a second; benchmarks/generation_throughput.py).
        resp = await self.client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        choice = resp.choices[0]
        usage = resp.usage
        text = choice.message.content or ""
        return (text, choice.finish_reason,
                usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                token_logprobs(choice.logprobs))

    async def close(self) -> None:
        await self.client.close()

