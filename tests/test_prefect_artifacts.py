"""What the pipeline flow shows in the Prefect UI, read back from the real Prefect test server: the
table artifact of each generator's PGR and cost, and the link artifact to the report. Canary: a run
with no results database and no report publishes neither. And where logs go: to the API when there
is a server to keep them, not from a lone stage's ephemeral one."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prefect import flow

from agorabench.results.metrics import generator_table
from tasks.pipeline import PGR_ARTIFACT, REPORT_ARTIFACT, publish_results
from tests.conftest import REPO
from tests.test_report import GENERATORS, results_db


@flow(name="publish-test")
def _publish(db_path, report_page):
    return publish_results(db_path, report_page)


def _artifacts(client, key: str, flow_run_id) -> list:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    return client.read_artifacts(artifact_filter=ArtifactFilter(
        key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def test_the_flow_publishes_the_pgr_table_and_the_report_link(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    db = results_db(tmp_path / "results")
    page = tmp_path / "reports" / "index.html"
    page.parent.mkdir()
    page.write_text("<!DOCTYPE html><title>report</title>")
    state = _publish(db, page, return_state=True)
    missing = _publish(tmp_path / "no.duckdb", tmp_path / "no.html", return_state=True)  # the canary
    assert state.is_completed() and missing.is_completed()
    with get_client(sync_client=True) as client:
        table, = _artifacts(client, PGR_ARTIFACT, state.state_details.flow_run_id)
        link, = _artifacts(client, REPORT_ARTIFACT, state.state_details.flow_run_id)
        none = [a for key in (PGR_ARTIFACT, REPORT_ARTIFACT)
                for a in _artifacts(client, key, missing.state_details.flow_run_id)]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert table.type == "table" and rows == json.loads(json.dumps(generator_table(db)))
    assert sorted(r["generator"] for r in rows) == sorted(GENERATORS)
    assert all(r["cost_usd"] > 0 and r["pgr_overall"] is not None for r in rows)
    # Prefect stores a link artifact as markdown: [text](url).
    assert link.type == "markdown" and link.data == f"[AgoraBench report]({page.resolve().as_uri()})"
    assert none == []


def test_the_pipeline_flow_itself_publishes_both_after_its_run(prefect_harness, tmp_path, monkeypatch):
    """The same through the pipeline flow (`agora run`'s and the deployment's), with its `dvc repro`
    stood in for: the artifacts belong to the pipeline's flow run and come from the repository's
    results database and report, where params.yaml puts them."""
    import shutil

    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    import agorabench.pipeline.run as pipeline_run
    from agorabench.results.db import DB_NAME
    from flows.pipeline import pipeline

    repo = tmp_path / "repo"
    (repo / "data/results").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    shutil.copy(results_db(tmp_path / "results"), repo / "data/results" / DB_NAME)
    (repo / "reports").mkdir()
    (repo / "reports/index.html").write_text("<!DOCTYPE html><title>report</title>")
    ran = []
    monkeypatch.setattr(pipeline_run, "run_pipeline", lambda params, prefect_env, **kw: ran.append(prefect_env) or {
        "rc": 0, "stages_run": ["report"], "stages_unchanged": [], "lanes": []})
    state = pipeline(repo=str(repo), return_state=True)
    assert state.is_completed() and len(ran) == 1
    # the stages report to this flow's server, and their client retries as this flow's does
    settings = get_current_settings()
    assert ran[0] == {"PREFECT_API_URL": settings.api.url, "PREFECT_CLIENT_MAX_RETRIES": str(settings.client.max_retries)}
    with get_client(sync_client=True) as client:
        table, = _artifacts(client, PGR_ARTIFACT, state.state_details.flow_run_id)
        link, = _artifacts(client, REPORT_ARTIFACT, state.state_details.flow_run_id)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sorted(r["generator"] for r in rows) == sorted(GENERATORS)
    assert link.data == f"[AgoraBench report]({(repo / 'reports/index.html').resolve().as_uri()})"
    assert state.result()["artifacts"] == {"table": str(table.id), "link": str(link.id)}


def _logging_default(env: dict[str, str]) -> str:
    code = ("import os; from agorabench.env_defaults import apply_defaults; apply_defaults(); "
            "from prefect.settings import get_current_settings; "
            "print(get_current_settings().logging.to_api.enabled)")
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_TO_API") and k != "PREFECT_API_URL"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**keep, **env},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_logs_go_to_the_api_when_a_server_keeps_them():
    # In the repository (prefect.toml is read from there) with a server: on; a lone stage: off.
    assert _logging_default({"PREFECT_API_URL": "http://127.0.0.1:9/api"}) == "True"
    assert _logging_default({}) == "False"
    # The user's word wins over both.
    assert _logging_default({"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_LOGGING_TO_API_ENABLED": "false"}) == "False"


@pytest.mark.parametrize("toml, expected", [("", "True"), ("[logging.to_api]\nenabled = false\n", "False")])
def test_prefect_toml_does_not_turn_api_logs_off(tmp_path, toml, expected):
    # The repository's prefect.toml with a server leaves API logs on; the canary is the line it had.
    (tmp_path / "prefect.toml").write_text((REPO / "prefect.toml").read_text() + toml)
    code = "from prefect.settings import get_current_settings; print(get_current_settings().logging.to_api.enabled)"
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_TO_API")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={**keep, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert done.stdout.strip() == expected
