"""Prefect flows: one per pipeline stage (generate, train, evaluate, intrinsic, subset, results, report),
plus `pipeline`, which `agora run` and the scheduled deployment run; and the `agora` CLI (cli.py), which
runs them. Thin: the logic is in agorabench/."""
