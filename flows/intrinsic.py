"""Prefect flow of the intrinsic stage: intrinsic metrics of a generator's datasets -> data/intrinsic/GEN/METHOD/DOMAIN.*"""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.models.endpoint import endpoints_from
from tasks.intrinsic import intrinsic_dataset


@flow(name="intrinsic", flow_run_name="intrinsic {generator}", log_prints=True)
def intrinsic(generator: str, domains: list[str] | None = None, methods: list[str] | None = None,
              params_file: str = "params.yaml", endpoints: dict[str, dict] | None = None) -> dict[str, dict]:
    params = load_params(params_file)
    if generator not in params.imports:
        params.generator(generator)  # an unknown name fails here, in one line
    servers = endpoints_from(endpoints)
    # One dataset after another: each loads the perplexity / reward / embedding models and batches its
    # own instances; side by side they would only split the same GPU or CPU.
    return {f"{method}/{domain}": intrinsic_dataset(params, generator, domain, method, servers)
            for method in methods or params.methods for domain in domains or params.domains}
