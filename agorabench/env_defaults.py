"""Quiet, offline defaults, applied before Prefect, DVC or Hugging Face are imported.

Only defaults: a variable the user already set wins. Telemetry is off everywhere; the Hub is offline
unless the run needs it (Params.reads_the_hub: the hub's seeds, Arena-Hard v0.1) or the user opts in
with AGORA_ONLINE=1.
"""
from __future__ import annotations

import os

QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # else the ephemeral server resolves a telemetry host
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",  # cold start is 8-11 s on 2 busy cores
    "PREFECT_UI_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "DVC_STUDIO_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def apply_defaults(online: bool = False) -> None:
    for k, v in QUIET.items():
        os.environ.setdefault(k, v)
    # Logs go to the Prefect API when a server outlives the process to show them (PREFECT_API_URL:
    # `agora run`'s, a deployment's). A lone stage's ephemeral server would only add a log thread and
    # a flush at exit.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "true" if os.environ.get("PREFECT_API_URL") else "false")
    # The library's own loggers (`agorabench.*`: what a stage is doing, how long its judge took) go to
    # the API too, so a flow run's page in the UI has them; outside a flow run they stay local, quietly.
    extra = [name for name in os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",") if name.strip()]
    if "PREFECT_LOGGING_EXTRA_LOGGERS" not in os.environ or extra:  # set empty, it turns ours off too
        os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join(dict.fromkeys([*extra, "agorabench"]))
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # What a flow or task run logs at INFO (the stages' and the pipeline's summaries) reaches the API, so
    # the Prefect UI shows it, while the console keeps Prefect at WARNING (prefect.toml): the run loggers
    # at INFO, the console handler at WARNING. A PREFECT_LOGGING_LEVEL of the user's decides both.
    if "PREFECT_LOGGING_LEVEL" not in os.environ:
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    if not online and os.environ.get("AGORA_ONLINE") != "1":
        for k, v in OFFLINE.items():
            os.environ.setdefault(k, v)
