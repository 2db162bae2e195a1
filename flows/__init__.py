"""Prefect flows: one per pipeline stage (generate, train, evaluate, intrinsic, subset, results, report),
plus `pipeline`, which `agora run` and the scheduled deployment run, and `export` and `import_dataset`
(datasets out to the Hub's format, outside datasets in); and the `agora` CLI (cli.py), which runs them. Thin: the logic is in agorabench/."""
