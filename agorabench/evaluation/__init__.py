"""Evaluation: scoring a model on the benchmarks.

    benchmarks/    one folder per benchmark (declaration and items in __init__.py, scoring in task.py)
    items.py       reading items from packages; the seed/eval split; overlap with evaluation items
    run.py         evaluating one model on one benchmark: prompts, answers, scores, files
    records.py     the evaluation's files (scores, items)
    sandbox.py     running generated code (MBPP, HumanEval), only when the user opted in
    code_scoring.py, pairwise.py, bradley_terry.py, context.py   what several benchmarks share

May import: config, setting, records, files, models, generation.seeds and generation.validation (few-shot demos
and prompt lengths), training (only for the note that a student is untrained).
"""
