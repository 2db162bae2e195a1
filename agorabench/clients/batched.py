"""A chat API that runs a model in this process and answers concurrent calls as one batch.

The engine issues many concurrent `chat` calls (GeneratorClient bounds them by the generator's
`concurrency`); a model in this process is fastest when it sees them together. So calls are queued,
and a single worker hands everything waiting to `generate_batch` at once, in a thread so the event
loop keeps running. Calls with different sampling settings go in separate batches.
"""
from __future__ import annotations

import asyncio

Answer = tuple[str, "str | None", int, int]  # text, finish_reason, input tokens, output tokens


class BatchedChat:
    max_batch = 512

    def __init__(self) -> None:
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def generate_batch(self, conversations: list[list[dict]], sampling: dict) -> list[Answer]:
        """One answer per conversation, all with the same sampling settings (runs in a thread)."""
        raise NotImplementedError

    async def chat(self, messages: list[dict], sampling: dict) -> Answer:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._drain())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, sampling, fut))
        return await fut

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0.005)  # let concurrent callers join this batch
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            groups: dict[str, list] = {}
            for item in batch:
                groups.setdefault(repr(sorted(item[1].items())), []).append(item)
            for items in groups.values():
                try:
                    answers = await asyncio.to_thread(self.generate_batch, [i[0] for i in items], items[0][1])
                except Exception as e:  # every waiter sees the failure, and GeneratorClient retries
                    for _, _, fut in items:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, _, fut), answer in zip(items, answers):
                    if not fut.done():  # a caller that was cancelled meanwhile gets nothing
                        fut.set_result(answer)

    async def close(self) -> None:
        if self._worker:
            self._worker.cancel()
