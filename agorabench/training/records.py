"""The files of a training run besides the checkpoint (whose student.json is models/checkpoints.py):
what `agora train` writes and the results collector reads.

    data/train/G/M/D.metrics.json  TrainingMetrics (a DVC metrics file)
    data/train/G/M/D.loss.csv      the loss curve, one row per logged step, columns LOSS_COLUMNS (a DVC plot)
"""
from __future__ import annotations

from agorabench.records import Record


class TrainingMetrics(Record):
    """data/train/G/M/D.metrics.json (a DVC metrics file). The loss curve beside it, .loss.csv, has
    the columns LOSS_COLUMNS."""
    trained: bool
    untrained_reason: str | None = None   # only for an empty dataset
    final_loss: float | None
    first_loss: float | None
    train_loss: float | None
    steps: int
    epochs: float
    examples: int
    seed_examples: int
    wall_s: float
    train_tokens: int
    tokens_per_s: float | None

    def to_json(self, **kw) -> str:
        return super().to_json(omit_none=("untrained_reason",), **kw)


LOSS_COLUMNS = ("step", "epoch", "loss", "learning_rate")
