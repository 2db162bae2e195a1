"""Generated datasets for tests, written with generation's own records (generation/records.py)."""
from __future__ import annotations

from pathlib import Path

from agorabench.generation.records import Instance


def instances(generator: str, method: str, domain: str, pairs: list[tuple[str, str]]) -> list[Instance]:
    """One Instance per (instruction, response), with the fields a real run fills made up plainly."""
    return [Instance(id=f"{generator}/{method}/{domain}/{k:06d}", instruction=i, response=r, config=f"{generator}-model",
                     generator=generator, method=method, domain=domain, attempt=k, seed_ids=[], theme=None,
                     first_word=None, prompt_sha256=None, request_key=None, input_tokens=None, output_tokens=None,
                     cost_usd=None)
            for k, (i, r) in enumerate(pairs)]


def write_instances(path: Path, rows: list[Instance]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.to_line() for r in rows))
    return path
