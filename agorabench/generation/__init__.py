"""Generation: one generator writes one setting's dataset.

    prompting.py, prompts/   meta-prompts (ours by default; generation.prompt_dir for others) and their lists
    official_prompts.py      the paper's own prompt files, converted for generation.prompt_dir
    seeds/                   the human seed data each setting starts from
    plan.py                  the state machine of one setting: which attempts to send, what to keep
    loop.py                  runs a plan against a generator (batches, concurrency, budget, progress)
    parsing.py, validation.py  what counts as a valid instance
    records.py               the dataset's files (instances, rejections, manifest)
    estimate.py              requests, tokens and cost before a run
    scaling.py               the quantity study's prefixes (NAME@SIZE)
    importing.py             outside datasets (`agora import`, imports: in params) written as a setting's dataset

May import: config, setting, records, files, models; evaluation.items (seeds are decontaminated against the
benchmarks' items).
"""
