"""Prefect flow of `agora export`: every dataset of the pipeline as one Hugging Face dataset folder, pushed when asked."""
from __future__ import annotations

from pathlib import Path

from prefect import flow

from agorabench.config import load_params
from agorabench.results.export import export_datasets, push_to_hub


@flow(name="export", log_prints=True)
def export(out_dir: str, params_file: str = "params.yaml", settings: list[str] | None = None,
           results_db: str | None = None, license: str = "other", repo_id: str | None = None,
           push: bool = False, private: bool = False) -> dict:
    """`results_db`: the database whose PGR and intrinsic metrics go into the card (None: none).
    `push`: upload the folder to repo_id with huggingface_hub (HF_ENDPOINT and HF_TOKEN apply)."""
    params = load_params(params_file)
    out = export_datasets(params, out_dir, settings=settings, results_db=results_db, license=license,
                          repo_id=repo_id)
    configs = sorted(p.name for p in (Path(out) / "data").iterdir())
    url = push_to_hub(out, repo_id, private=private) if push else None
    return {"out_dir": str(out), "configs": configs, "commit_url": url}
