"""In-process vLLM generation for GPU hosts (optional; never imported unless a generator asks for it).

Our engine issues many concurrent `chat` calls; vLLM is fastest when it sees them as one batch. So
calls are queued and a single worker hands everything waiting to `LLM.chat` at once, in a thread so
the event loop keeps running. vLLM is installed in its own environment on GPU hosts (its torch and
transformers pins differ from ours); the usual route there is `vllm serve` + the `openai` backend.
"""
from __future__ import annotations

import asyncio


class VLLMBatch:
    def __init__(self, *, model: str, engine_args: dict | None = None, max_batch: int = 512):
        try:
            import vllm  # noqa: F401  (GPU-only dependency)
        except ImportError:
            raise RuntimeError(
                "backend 'vllm' needs the vllm package on a GPU host (pip install vllm in its own "
                "environment), or use backend 'openai' with base_url pointing at `vllm serve`"
            ) from None
        from vllm import LLM

        self.model = model
        self.llm = LLM(model=model, **(engine_args or {}))
        self.max_batch = max_batch
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def chat(self, messages: list[dict], sampling: dict) -> tuple[str, str | None, int, int]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._drain())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, sampling, fut))
        return await fut

    async def _drain(self) -> None:
        from vllm import SamplingParams

        while True:
            first = await self._queue.get()
            batch = [first]
            await asyncio.sleep(0.005)  # let concurrent callers join this batch
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            # One LLM.chat call per distinct sampling setting (usually exactly one). Each request's own
            # seed (endpoint.with_seed) goes into its own SamplingParams, paired with its prompt.
            groups: dict[str, list] = {}
            for item in batch:
                groups.setdefault(repr(sorted((k, v) for k, v in item[1].items() if k != "seed")), []).append(item)
            for items in groups.values():
                s = {k: v for k, v in items[0][1].items() if v is not None}
                params = [SamplingParams(temperature=s.get("temperature", 1.0), top_p=s.get("top_p", 1.0),
                                         max_tokens=s.get("max_tokens", 1024), stop=s.get("stop"),
                                         seed=item[1].get("seed")) for item in items]
                try:
                    outs = await asyncio.to_thread(self.llm.chat, [i[0] for i in items], params, use_tqdm=False)
                except Exception as e:  # every waiter sees the failure and the engine retries
                    for _, _, fut in items:
                        if not fut.done():  # a waiter cancelled meanwhile must not stop this worker
                            fut.set_exception(e)
                    continue
                for (_, _, fut), out in zip(items, outs):
                    o = out.outputs[0]
                    if not fut.done():
                        fut.set_result((o.text, o.finish_reason, len(out.prompt_token_ids), len(o.token_ids)))

    async def close(self) -> None:
        if self._worker:
            self._worker.cancel()
