"""Prefect flow of `agora import`: an outside dataset becomes one setting's dataset and imports.NAME in params."""
from __future__ import annotations

from prefect import flow

from agorabench.config import ImportConfig, load_params
from agorabench.generation.importing import register_import, with_import, write_import


@flow(name="import", flow_run_name="import {name}", log_prints=True)
def import_dataset(name: str, config: dict, params_file: str = "params.yaml") -> dict:
    """Write the dataset of `config` (an ImportConfig that importing.resolve_import checked), as the
    import's generate stage will, then register it in the params file. Returns the manifest."""
    cfg = ImportConfig.model_validate(config)
    manifest = write_import(with_import(load_params(params_file), name, cfg), name)
    register_import(params_file, name, cfg)
    return manifest.model_dump()
