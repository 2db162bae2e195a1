"""Two generators' generation settings side by side on a local Dask cluster (prefect-dask), against
the fake server: every dataset comes out, byte-identical to a plain run without Prefect or Dask, and
the settings really ran on the Dask workers."""
import asyncio

import yaml

from agorabench.config import load_params
from agorabench.generation.loop import generate_setting
from agorabench.setting import Setting
from tests.conftest import REPO, write_params

GENERATORS = ["fake", "fake-claude"]  # OpenAI and Anthropic wire formats, one fake server
SETTINGS = {"methods": ["instance_generation", "response_generation"], "domains": ["general"],
            "generation.num_instances": 3}


def params_at(folder, server_url: str, **overrides):
    """A params.yaml in its own folder (own outputs and request store) that uses the fake server."""
    folder.mkdir()
    judges = {f"{k}.judge": "fake" for k, v in yaml.safe_load((REPO / "params.yaml").read_text()).items()
              if isinstance(v, dict) and "judge" in v}  # every judge must be a declared generator
    return write_params(folder / "params.yaml", server_url, **SETTINGS, **judges, **overrides)


def datasets(params_file) -> dict[str, bytes]:
    params = load_params(params_file)
    return {f"{g}/{m}/{d}": Setting(g, m, d).dataset(params)["data"].read_bytes()
            for g in GENERATORS for m in params.methods for d in params.domains}


def test_two_generators_on_a_dask_cluster_match_a_plain_run(prefect_harness, tmp_path, fake_server, monkeypatch):
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import generate_all

    monkeypatch.setenv("FAKE_API_KEY", "k")
    # Each run has its own output folder and request store: nothing is answered from another's cache.
    plain = params_at(tmp_path / "plain", fake_server.url)
    params = load_params(plain)
    for g in GENERATORS:
        for m in params.methods:
            asyncio.run(generate_setting(params, g, "general", m, progress=False))

    on_dask = params_at(tmp_path / "dask", fake_server.url)
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": False,
                                            "dashboard_address": None})
    manifests = generate_all(GENERATORS, params_file=str(on_dask), task_runner=runner)

    assert set(manifests) == set(datasets(on_dask)) and len(manifests) == 4
    assert all(m["num_valid"] == 3 and m["run"]["answers_cached"] == 0 for m in manifests.values())
    assert datasets(on_dask) == datasets(plain), "same seed, same datasets, whatever runs them"
    workers = {m["run"]["worker"] for m in manifests.values()}
    assert workers == {"dask:0", "dask:1"}, workers  # both workers of the cluster took settings

    # Canaries: another seed gives other datasets (the equality above is not vacuous), and the
    # default runner is Prefect's thread pool, not Dask.
    other = params_at(tmp_path / "other", fake_server.url, **{"generation.seed": 7})
    manifests = generate_all(GENERATORS, params_file=str(other))
    assert datasets(other) != datasets(plain)
    assert all(m["run"]["worker"].startswith("thread:") for m in manifests.values())
