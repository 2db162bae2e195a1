"""The pipeline as a whole: how `agora run` (and the scheduled deployment, through the same flow) runs
dvc.yaml.

    run.py       lanes of `dvc repro`, the local model servers each lane's stages call, one Prefect server
    stages.py    the stages params name (settings' chains, the anchors, the generators' own scores)
    dry_run.py   what a run would do and cost, from params alone

May import: everything below it (config, setting, models, generation, evaluation); never Prefect itself
(it starts `prefect server` as a process).
"""
