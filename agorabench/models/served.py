"""A model folder answered by a vLLM server: a student, the base or the reference.

A LoRA student is its base model plus an adapter. On a GPU one server per base model answers every
student trained on it: the server is started with LoRA on, and each student's adapter is loaded into it
by name before its requests (vLLM's runtime LoRA loading), instead of one model load per evaluation.
On a CPU, where vLLM decodes through an adapter several times slower than through plain weights, the
student is merged into a copy of its base (in float32, then cast to the server's weights, as in this
process), which a server of its own answers and which is deleted when the answerer closes
(servers.serves_lora_adapters). `agora run` starts the base's server once for all the stages of a lane
and passes it in (`endpoint`); without one, the answerer starts a server of its own and stops it on close().

Answers are keyed like every other (models/answering.py) under backend "vllm", with the in-process
spelling of the decoding settings (what transformers and vLLM both take, repetition penalty included).
Requests go out concurrently, a wave at a time, and each wave is stored before the next is sent: a
killed evaluation loses at most one wave. Sampling is seeded per request from its key, and the server
runs in float32 on a CPU unless `cpu_weights` asks for bfloat16, so by default an answer does not depend on
what else was in the batch (servers.vllm_cpu_dtype).
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from agorabench.models import chat_template as templates
from agorabench.models.answering import Answerer, Decoding
from agorabench.models.endpoint import Endpoint
from agorabench.models.in_process import model_identity, weights_of
from agorabench.models.servers import LocalServerError
from agorabench.models.store import Completion, RequestStore, token_logprobs


class ServedModelAnswerer(Answerer):
    backend = "vllm"
    gives_logprobs = True  # vLLM's chat API returns up to its max_logprobs (20) top log-probabilities

    def __init__(self, path: str, store: RequestStore, *, endpoint: Endpoint | None = None, concurrency: int = 8,
                 chat_template: str | None = None, cpu_weights: str | None = None, timeout_s: float = 600.0,
                 merge_lora: bool = False):
        """`path`: a packaged model name, a folder (a student: weights or a LoRA adapter) or a hub id.
        `endpoint`: a running vLLM server of the base model with these `cpu_weights` (with LoRA on, for a LoRA
        student, unless `merge_lora`). `merge_lora`: a LoRA student is merged into a copy of its base,
        answered by a server of its own (the endpoint then serves only a student trained on nothing)."""
        from agorabench.models.cpu_weights import effective

        self.weights, self.base = weights_of(path)  # a LoRA student: (adapter folder, base model folder)
        self.merge_lora = merge_lora and self.base is not None
        identity = {"backend": self.backend, "model": model_identity(path)}
        if effective(cpu_weights):
            identity["cpu_weights"] = effective(cpu_weights)
        if self.merge_lora:  # merged weights round differently from an adapter applied on the fly
            identity["lora"] = "merged"
        if templates.digest(chat_template):  # a configured template prompts the model differently from its own
            identity["chat_template"] = templates.digest(chat_template)
        super().__init__(store, identity)
        self.path, self.endpoint, self.concurrency, self.timeout_s = path, endpoint, concurrency, timeout_s
        self.configured_template = chat_template
        self.chat_template: str | None = None  # sent with each request when not the served model's own
        self.stop_token_ids: list[int] = []
        self.cpu_weights = cpu_weights
        self._server = None
        self._merged: Path | None = None  # the merged copy, deleted on close()
        self._model: str | None = None  # what requests name: the served model, or the adapter's name

    def sampling(self, decoding: Decoding) -> dict:
        return decoding.as_dict()

    def _chat_format(self) -> None:
        """The template this model is prompted with (models/chat_template.py), sent with each request
        unless it is the tokenizer's own, and the tokens that end its answers."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.weights)  # a LoRA student's folder holds its tokenizer
        own = tok.chat_template
        templates.apply(tok, self.configured_template)
        self.chat_template = tok.chat_template if tok.chat_template != own else None
        self.stop_token_ids = templates.end_of_turn_ids(tok)

    def _open(self) -> tuple[str, str]:
        """(base_url, model name to request), starting a server and loading the adapter on first need."""
        if self._model is None:
            from agorabench.models.servers import LocalModelServer, load_lora, vllm_cpu_dtype

            self._chat_format()
            name = "student-" + hashlib.sha256(self.identity["model"].encode()).hexdigest()[:16]
            model, lora = self.base or self.weights, self.base is not None
            if self.merge_lora:
                from agorabench.models.in_process import save_merged

                vllm_cpu_dtype(self.cpu_weights)  # weights vLLM cannot run fail here, before the merge
                self._merged = save_merged(self.path, Path(".agora/merged").resolve() / name, self.cpu_weights)
                model, lora = str(self._merged), False
            base_url = self.endpoint.base_url if self.endpoint and not self.merge_lora else None
            served = self.endpoint.model_id if base_url else None
            if base_url is None:
                self._server = LocalModelServer(model, engine="vllm", lora=lora, cpu_weights=self.cpu_weights,
                                                log_path=Path(".agora/logs") / f"vllm-{Path(model).name}.log")
                self._server.start()
                base_url, served = self._server.base_url, self._server.model_id
            self.base_url = base_url
            if lora:
                load_lora(base_url, name, self.weights)
                self._model = name
            else:
                self._model = served
        return self.base_url, self._model

    def _compute(self, conversations, decoding: Decoding, sample_index: int):
        base_url, model = self._open()
        wave = self.concurrency * 4
        for start in range(0, len(conversations), wave):
            chunk = list(range(start, min(start + wave, len(conversations))))
            yield chunk, asyncio.run(self._wave(base_url, model, [conversations[i] for i in chunk], decoding,
                                                sample_index))

    async def _wave(self, base_url: str, model: str, conversations, decoding: Decoding,
                    sample_index: int) -> list[Completion]:
        import openai

        client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=self.timeout_s, max_retries=2)
        slots = asyncio.Semaphore(self.concurrency)
        sample = decoding.temperature > 0

        async def one(messages) -> Completion:
            _, key = self.request(messages, decoding, sample_index)
            body = {"model": model, "messages": messages, "max_tokens": decoding.max_new_tokens,
                    "temperature": decoding.temperature, "top_p": decoding.top_p if sample else 1.0,
                    # vLLM's own fields: seeded per request (from its key), and the penalty chat APIs lack.
                    "seed": int(key[:8], 16), "repetition_penalty": decoding.repetition_penalty or 1.0}
            if self.chat_template:  # the server takes it: it is started with --trust-request-chat-template
                body["chat_template"] = self.chat_template
            if self.stop_token_ids:  # a base model's generation config stops only at its end of text
                body["stop_token_ids"] = self.stop_token_ids
            if decoding.top_logprobs:
                body.update(logprobs=True, top_logprobs=decoding.top_logprobs)
            async with slots:
                started = time.perf_counter()
                try:
                    resp = await client.post("/chat/completions", body=body,
                                             cast_to=openai.types.chat.ChatCompletion)
                except openai.APIStatusError as e:  # a request vLLM refuses (too long, unknown adapter)
                    reason = " ".join(str(e.message).split())[:400]
                    raise LocalServerError(f"the vLLM server at {base_url} refused a request for {self.path} "
                                           f"({e.status_code}: {reason})") from None
                except openai.APIConnectionError:  # its engine died: the reason is in the server's log
                    raise LocalServerError(f"the vLLM server at {base_url} stopped answering requests for "
                                           f"{self.path}; the reason is at the end of its log "
                                           f"(.agora/logs/ under `agora run`)") from None
            choice, usage = resp.choices[0], resp.usage
            return Completion(text=choice.message.content or "", finish_reason=choice.finish_reason,
                              input_tokens=usage.prompt_tokens if usage else 0,
                              output_tokens=usage.completion_tokens if usage else 0,
                              latency_s=time.perf_counter() - started, cost_usd=0.0,
                              logprobs=token_logprobs(choice.logprobs) if decoding.top_logprobs else None)

        try:
            return list(await asyncio.gather(*(one(m) for m in conversations)))
        finally:
            await client.close()

    def close(self) -> None:
        try:
            if self._server is not None:
                self._server.stop()
            if self._merged is not None:
                import shutil

                shutil.rmtree(self._merged, ignore_errors=True)
        finally:
            super().close()
