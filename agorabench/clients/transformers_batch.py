"""A local model run by transformers inside this process: concurrent calls become one `generate` batch.

The CPU default (`engine: transformers`). `transformers serve` answers one request at a time (its
continuous batching freezes the first request's sampling settings and ignores stop strings), and
a 2-core CPU decodes a 4-sequence batch 3-4x faster than 4 sequences one after another, so the
generation and judging stages load the model here instead of talking to a server. The served
engines (`transformers-serve`, `llamacpp`, `vllm`) remain the route to a shared or remote model.
"""
from __future__ import annotations

import hashlib
import json

from agorabench.clients.batched import Answer, BatchedChat


class TransformersBatch(BatchedChat):
    def __init__(self, *, model: str, max_batch: int = 8, seed: int = 0):
        super().__init__()
        from agorabench.inference import load_model

        self.model_name, self.max_batch, self.seed = model, max_batch, seed
        self.model, self.tok = load_model(model)

    def generate_batch(self, conversations: list[list[dict]], sampling: dict) -> list[Answer]:
        from agorabench.inference import generate_answers

        # Seeded by what the batch holds, so the same batch draws the same samples on any run.
        digest = hashlib.sha256(json.dumps([conversations, sampling], sort_keys=True).encode()).digest()
        seed = sampling.get("seed", self.seed) + int.from_bytes(digest[:4], "big")
        return generate_answers(self.model, self.tok, conversations, temperature=sampling.get("temperature", 1.0),
                                top_p=sampling.get("top_p"), max_new_tokens=sampling.get("max_tokens") or 1024,
                                stop=tuple(sampling.get("stop") or ()), seed=seed)
