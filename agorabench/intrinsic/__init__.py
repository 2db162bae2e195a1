"""Intrinsic quality of generated datasets (docs/paper.md §3.1): what a dataset looks like before any student
is trained on it.

    judge.py       instruction difficulty and response quality, 1-5, by an LLM judge (prompts/)
    reward.py      response quality by a sequence-classification reward model
    perplexity.py  response perplexity under the base student (response tokens only)
    diversity.py   mean pairwise cosine distance of instruction / response embeddings
    cache.py       per-instance results in SQLite, so only new data is scored
    run.py         intrinsic_for_dataset: all of the above for one dataset -> Parquet + summary JSON

The `intrinsic:` section of params.yaml is config.IntrinsicConfig. Heavy libraries (torch,
transformers, sentence-transformers) are imported only when a metric runs.

May import: config, setting, files, models, evaluation.context (the judge's signature), generation (the dataset's
files), training (the base model's chat format).
"""
