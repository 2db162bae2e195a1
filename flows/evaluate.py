"""Prefect flow of the evaluate stages: one model on its benchmarks -> data/eval/<model>/<benchmark>.{parquet,scores.json}."""
from __future__ import annotations

from prefect import flow

from agorabench.config import load_params
from agorabench.evaluation.run import benchmarks_for, write_score_summary
from agorabench.models.endpoint import endpoints_from
from tasks.evaluation import answer_all, evaluate_benchmark


@flow(name="evaluate", flow_run_name="evaluate {model}", log_prints=True)
def evaluate(model: str, benchmarks: list[str] | None = None, params_file: str = "params.yaml",
             allow_code_execution: bool | None = None, endpoints: dict[str, dict] | None = None) -> dict[str, dict]:
    params = load_params(params_file)
    names = benchmarks or benchmarks_for(params, model)
    servers = endpoints_from(endpoints)
    # Every benchmark's answers in one batched pass per decoding setting first (a model run here);
    # then one benchmark after another scores them, reading the answers from the request store.
    generated = answer_all(params, model, names, allow_code_execution, servers)
    if generated:
        print(f"{model}: {sum(generated.values())} answers generated in one batched pass over {', '.join(names)}")
    results = {b: evaluate_benchmark(params, model, b, allow_code_execution, servers) for b in names}
    for b, n in generated.items():  # the pass's answers count as this stage's, not as found in the store
        run = results[b]["run"]
        run.update(generated=run["generated"] + n, cached=run["cached"] - n)
    write_score_summary(params, model, results)
    return results
