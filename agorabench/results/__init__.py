"""The results database: collect.py (the pipeline's files -> deterministic Parquet), db.py (Parquet ->
DuckDB with views), query.py (`agora sql`), schema.py and views.py (what every table and view holds:
views.py is the one implementation of PGR), docs.py (docs/results-schema.md), export.py (every dataset
as one Hugging Face dataset with a card from the manifests and the database, `agora export`).

May import: config, setting, records, files, and each step's records (generation, training, evaluation,
intrinsic, models.checkpoints); export.py also training's conversation format.
"""
