"""How often the embedded default's judge gives no verdict, read from its text and from its log-probabilities.

The default's judge (Qwen2.5-Coder-0.5B, params.yaml's qwen-coder) is served by vLLM as `agora run`
serves it, one server for everything here. The same model first answers the first N AlpacaEval and
Arena-Hard items of the default's sample (params.yaml's decoding and prompt limit); then its answers are
judged against the baselines by the benchmarks' own score(), twice: reading the verdict from the text
(judge_top_logprobs 0, what main did) and from the top log-probabilities (20). Prints, per benchmark and
reading, the judgements that gave no verdict (AlpacaEval: items, Arena-Hard: games), and how often a
score would be missing at the default's limits (params.yaml's evaluation.limits): the share of disjoint
groups of that many items whose every judgement failed.

    AGORA_VLLM_PYTHON=/path/to/.venv-vllm/bin/python python benchmarks/judge_verdicts.py [--items 20]
        [--store /tmp/judge-verdicts/requests.sqlite]

Answers and judgements go through the request store (--store), so a second run sends nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def failed(benchmark: str, rows: list[dict]) -> list[bool]:
    """Per judgement (AlpacaEval: item, Arena-Hard: game): no verdict."""
    if benchmark == "alpacaeval":
        return [r["preference"] is None for r in rows if not r["judge_skipped"]]
    return [g.get("label_probs") is None for r in rows if not r["judge_skipped"] for g in r["games"]]


def has_verdict(benchmark: str, row: dict) -> bool:
    if benchmark == "alpacaeval":
        return row["preference"] is not None
    return any(g.get("label_probs") is not None for g in row["games"])


def missing_scores(benchmark: str, rows: list[dict], group: int) -> tuple[int, int]:
    """(groups of `group` consecutive items none of which has a verdict, groups): a model evaluated on
    just those items would have no score."""
    groups = [rows[i:i + group] for i in range(0, len(rows) - group + 1, group)]
    return sum(not any(has_verdict(benchmark, r) for r in g) for g in groups), len(groups)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--store", default="/tmp/judge-verdicts/requests.sqlite")
    ap.add_argument("--startup-timeout", type=float, default=1200, help="seconds vLLM may take to start")
    ap.add_argument("--out", default=None, help="write the rows of every run here (JSON)")
    args = ap.parse_args()

    from agorabench.config import load_params
    from agorabench.evaluation.context import ScoreContext
    from agorabench.evaluation.run import benchmark_module, decoding_for, select_items
    from agorabench.models.answering import Decoding
    from agorabench.models.endpoint import Endpoint, EndpointAnswerer
    from agorabench.models.servers import LocalModelServer, server_key

    params = load_params(REPO / "params.yaml")
    ev = params.evaluation
    params = params.model_copy(update={
        "cache": params.cache.model_copy(update={"requests_db": args.store}),
        "evaluation": ev.model_copy(update={"limits": {"alpacaeval": args.items, "arenahard": args.items}}),
    })
    judge_cfg = params.generators[ev.judge]
    started = time.monotonic()
    with LocalModelServer(judge_cfg.model, engine="vllm", cpu_weights=judge_cfg.cpu_weights,
                          log_path=Path(args.store).parent / "vllm.log",
                          startup_timeout_s=args.startup_timeout) as server:
        print(f"vLLM server of {judge_cfg.model} up in {time.monotonic() - started:.0f} s", flush=True)
        endpoints = {server_key("vllm", judge_cfg.model, judge_cfg.cpu_weights): Endpoint(server.base_url, server.model_id)}
        model = EndpointAnswerer(params, ev.judge, endpoints=endpoints)
        judge = EndpointAnswerer(params, ev.judge, endpoints=endpoints)
        report, dump = [], {}
        try:
            for benchmark, group in ((b, ev.limits.get(b, ev.limit)) for b in ("alpacaeval", "arenahard")):
                module = benchmark_module(benchmark)
                items = select_items(params, benchmark)
                t = time.monotonic()
                answers = model.answer_many([module.build_messages(it) for it in items], decoding_for(params, benchmark))
                outputs = [a.text if a is not None else "" for a in answers]
                print(f"{benchmark}: {len(items)} answers in {time.monotonic() - t:.0f} s", flush=True)
                fn = judge.judge(Decoding(temperature=0.0, top_p=1.0, max_new_tokens=ev.judge_max_tokens,
                                          repetition_penalty=1.0))
                for top in (0, ev.judge_top_logprobs):
                    ctx = ScoreContext(judge=fn, judge_name=ev.judge, judge_reasoning=ev.judge_reasoning,
                                       judge_max_answer_chars=ev.judge_max_answer_chars, judge_top_logprobs=top,
                                       seed=params.generation.seed)
                    t = time.monotonic()
                    rows = module.score(items, outputs, ctx)
                    fails = failed(benchmark, rows)
                    missing, groups = missing_scores(benchmark, rows, group)
                    try:
                        metrics = module.summarize(rows)
                        score = metrics[module.PRIMARY]
                    except ValueError as e:
                        score = f"none ({e})"
                    reading = "logprobs" if top else "text"
                    report.append(f"{benchmark:10s} {reading:8s} judgements without a verdict: {sum(fails)}/{len(fails)}"
                                  f" ({100 * sum(fails) / max(1, len(fails)):.1f} %); scores missing at the default's"
                                  f" {group} items: {missing}/{groups}; {module.PRIMARY} = {score}")
                    print(report[-1], f"[{time.monotonic() - t:.0f} s]", flush=True)
                    dump[f"{benchmark}/{reading}"] = rows
        finally:
            model.close()
            judge.close()
    print("\n".join(["", *report]))
    if args.out:
        Path(args.out).write_text(json.dumps(dump, indent=1, default=str))


if __name__ == "__main__":
    main()
