"""Fine-tuning the student on one generated dataset (TRL SFT, loss on response tokens only).

    sft.py       the training run: examples, trainer, checkpoint, metrics, the accelerate launch
    records.py   the metrics and loss-curve files it writes beside the checkpoint

May import: config, setting, records, files, models (packaged models, checkpoints), generation (the dataset
and, for instance generation, its seeds).
"""
