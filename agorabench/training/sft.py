"""Fine-tuning the student on one generated dataset (TRL SFT, loss on response tokens only).

The sample format follows the official recipe: a system turn, the instruction as the user turn, the
response as the assistant turn, rendered with the student's chat template. TRL's conversational
prompt-completion format gives exactly that and masks every prompt token out of the loss
(`completion_only_loss`); tests/test_training.py proves it on real batches.

Outputs of one run (paths from `training:` in params.yaml):
  data/checkpoints/G/M/D/             the student: full weights (save_dtype) or a LoRA adapter, its
                                      tokenizer, and student.json (base model, data hash, versions)
  data/train/G/M/D.metrics.json       final loss, steps, tokens, wall time (a DVC metrics file)
  data/train/G/M/D.loss.csv           the loss curve, step by step (a DVC plot)
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from agorabench.config import Params, ParamsError
from agorabench.files import StorageError, replacing_dir, write_atomic
from agorabench.models import chat_template
from agorabench.models.checkpoints import STUDENT_FILE, StudentRecord
from agorabench.records import read_json_lines
from agorabench.training.records import LOSS_COLUMNS, TrainingMetrics
from agorabench.setting import Setting




# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def conversation(instruction: str, response: str, system_prompt: str | None) -> dict:
    """One training example in TRL's conversational prompt-completion format."""
    prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompt.append({"role": "user", "content": instruction})
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": response}]}


def training_examples(params: Params, generator: str, domain: str, method: str) -> tuple[list[dict], dict]:
    """(examples, info): the generated rows, plus the seed set for instance generation (the paper).

    The generated data is used without filtering beyond generation's own validation, as in the
    paper, unless decontamination.drop: then the instances the decontaminate stage flagged are left
    out (`drop_contaminated`). Seeds come from the same loader generation used, so they are the demos
    it saw. The list may be empty: a weak generator can spend its whole retry budget without one
    valid instance.
    """
    setting = Setting(generator, method, domain)
    path = setting.dataset(params)["data"]
    if not path.exists():
        raise ParamsError(f"{path}: no generated dataset; run `agora generate --generator {generator} "
                          f"--domain {domain} --method {method}` first")
    rows = read_json_lines(path, f"`agora generate --generator {generator} --domain {domain} --method {method}`")
    kept = drop_contaminated(params, setting, rows, path)
    dropped, rows = len(rows) - len(kept), kept
    system = params.student.system_prompt
    examples = [conversation(r["instruction"], r["response"], system) for r in rows]
    seeds_used = 0
    if method == "instance_generation":
        from agorabench.generation.plan import load_setting_seeds

        seeds = [s for s in load_setting_seeds(params, domain, method) if s.response]
        cap = params.training.max_seed_examples
        seeds = seeds if cap is None else seeds[:cap]
        examples += [conversation(s.instruction, s.response, system) for s in seeds]
        seeds_used = len(seeds)
    digest = hashlib.sha256(orjson.dumps(examples, option=orjson.OPT_SORT_KEYS)).hexdigest()
    info = {"dataset": str(path), "generated_examples": len(rows), "dropped_examples": dropped,
            "seed_examples": seeds_used, "examples": len(examples), "examples_sha256": digest}
    return examples, info


def drop_contaminated(params: Params, setting: Setting, rows: list[dict], path: Path) -> list[dict]:
    """The rows without those the decontaminate stage's drop list names (DOMAIN.drop.json).

    The list says whether it was made to drop (decontamination.drop); one made under the other setting,
    or for another version of the dataset, is an error rather than a silent mix. A dataset without a
    list (made outside the pipeline) keeps every row unless params ask to drop.
    """
    from agorabench.generation.records import read_drop_list

    drop_path = setting.contamination(params)["drop"]
    rerun = (f"run `agora decontaminate --generator {setting.name} --domain {setting.domain} "
             f"--method {setting.method}`")
    if not drop_path.is_file():
        if params.decontamination.drop:
            raise ParamsError(f"{drop_path}: no drop list, and decontamination.drop is true; {rerun} first")
        return rows
    listed = read_drop_list(drop_path, setting.label)
    if listed.drop != params.decontamination.drop:
        raise ParamsError(f"{drop_path} was made with decontamination.drop = {str(listed.drop).lower()} but params "
                          f"say {str(params.decontamination.drop).lower()}; {rerun} again")
    if listed.dataset_sha256 != hashlib.sha256(path.read_bytes()).hexdigest():
        raise ParamsError(f"{drop_path} was made for another version of {path}; {rerun} again")
    ids = set(listed.ids)
    unknown = ids - {r["id"] for r in rows}
    if unknown:
        raise ParamsError(f"{drop_path} names {min(unknown)!r}, which {path} does not have; {rerun} again")
    return [r for r in rows if r["id"] not in ids]


# ---------------------------------------------------------------------------------------------
# Model, tokenizer, trainer
# ---------------------------------------------------------------------------------------------


def load_tokenizer(params: Params, model_path: str):
    """The student's tokenizer with the chat template it is trained in (models/chat_template.py)."""
    from transformers import AutoTokenizer

    tok = chat_template.apply(AutoTokenizer.from_pretrained(model_path), params.student.chat_template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _use_bf16(setting, lora: bool) -> bool:
    """Whether the student trains in bf16 (mixed precision, the model loaded in bf16). auto: on a GPU
    that supports it; on a CPU that computes bf16 natively (AMX, AVX512-BF16), for LoRA only: the
    frozen base runs in bf16 and the adapter stays float32 (peft), faster than float32
    (docs/performance.md, "bf16 training"). Full fine-tuning keeps float32 weights on a CPU, where
    bf16 ones would lose small updates."""
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        from agorabench.models.cpu_weights import native_bf16

        return lora and native_bf16()
    return bool(setting)


def sft_config(params: Params, output_dir: str, num_examples: int):
    """TRL's SFTConfig from params.yaml's `training:` section."""
    import torch
    from trl import SFTConfig

    t = params.training
    scheduler = "constant" if t.lr_scheduler == "epoch_decay" else t.lr_scheduler  # epoch_decay: see below
    return SFTConfig(
        output_dir=output_dir,
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps,
        weight_decay=t.weight_decay,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=t.max_grad_norm or 0.0,  # 0 disables clipping
        seed=t.seed,
        data_seed=t.seed,
        bf16=_use_bf16(t.bf16, t.lora is not None),
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=t.gradient_checkpointing,
        max_length=t.max_length,
        packing=t.packing,
        completion_only_loss=True,  # loss on response tokens only
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="no",  # DVC keeps the final checkpoint; intermediate ones would only fill disks
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )


def _student_trainer_class(lr_scheduler: str, lr_epoch_decay: float):
    """TRL's SFTTrainer with two changes of ours, both plain overrides.

    - On a CPU the loss is the model's own masked mean NLL (transformers' `Trainer.compute_loss`),
      not TRL's fused LM head. The fused head saves GPU memory on large vocabularies, but it also
      computes entropy and top-1 accuracy for the logs, and on a CPU that made each step ~20% slower
      (benchmarks/train_throughput.py). The labels are the same (-100 on prompt tokens), so is the loss.
    - lr_scheduler "epoch_decay": lr x gamma after every epoch, no warm-up (the official recipe's
      StepLR(1 epoch, 0.85)).
    """
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import Trainer
    from trl import SFTTrainer

    class StudentSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            plain = (self.args.device.type == "cpu" and self.compute_loss_func is None
                     and self.label_smoother is None and self.args.loss_type == "nll" and not self.aux_loss_enabled)
            if not plain:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = {**inputs, "use_cache": False}
            if self.model.training:  # the token count TRL logs as num_tokens (packed batches have no mask)
                mask = inputs.get("attention_mask")
                self._total_train_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        def create_scheduler(self, num_training_steps, optimizer=None):
            if lr_scheduler != "epoch_decay":
                return super().create_scheduler(num_training_steps, optimizer)
            if self.lr_scheduler is None:
                steps_per_epoch = max(1, math.ceil(num_training_steps / max(self.args.num_train_epochs, 1e-9)))
                self.lr_scheduler = LambdaLR(optimizer or self.optimizer,
                                             lambda step: lr_epoch_decay ** (step // steps_per_epoch))
            return self.lr_scheduler

    return StudentSFTTrainer


def _training_progress(label: str):
    """A Trainer callback that shows optimizer steps done of the total, with the last logged loss, as
    the other long steps do (progress.py: a bar on a terminal, a line every 30 s elsewhere). The
    Trainer's own tqdm bar is off (sft_config): it prints nothing useful into a log file. Only the main
    process reports, so a multi-GPU run prints one line, not one per GPU."""
    from transformers import TrainerCallback

    from agorabench.progress import Progress

    class TrainingProgress(TrainerCallback):
        def __init__(self):
            self.progress, self.loss = None, None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = Progress(label, state.max_steps, unit="steps")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(state.global_step, info=None if self.loss is None else f"loss {self.loss:.3f}")

        def close(self):
            if self.progress is not None:
                self.progress.close()

    return TrainingProgress()


def build_trainer(params: Params, examples: list[dict], output_dir: str, model_path: str | None = None):
    """An SFTTrainer for `examples`; model and tokenizer from student.base (or `model_path`)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from agorabench.models.packaged import resolve_model

    t = params.training
    path = model_path or resolve_model(params.student.base)
    tokenizer = load_tokenizer(params, path)
    dtype = torch.bfloat16 if _use_bf16(t.bf16, t.lora is not None) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    peft_config = None
    if t.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                                 target_modules=t.lora.target_modules, task_type="CAUSAL_LM")
    cls = _student_trainer_class(t.lr_scheduler, t.lr_epoch_decay)
    return cls(model=model, args=sft_config(params, output_dir, len(examples)),
               train_dataset=Dataset.from_list(examples), processing_class=tokenizer, peft_config=peft_config)


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def _parallelism(trainer) -> dict | None:
    """How a launch over several processes trained: accelerate's distributed type (FSDP, MULTI_GPU...),
    the number of processes, and whether the weights were sharded across them (FSDP2, the shipped
    config's version, turns each into a DTensor). None for one process, so a single-process student's
    record is as before."""
    from torch.distributed.tensor import DTensor

    acc = trainer.accelerator
    if acc.num_processes == 1:
        return None
    sharded = any(isinstance(p, DTensor) for p in trainer.model.parameters())
    return {"distributed_type": getattr(acc.distributed_type, "value", str(acc.distributed_type)),
            "processes": acc.num_processes, "sharded": sharded}


def _rerun(setting: Setting) -> str:
    return f"`agora train --generator {setting.name} --domain {setting.domain} --method {setting.method}`"


def _write_loss_curve(log_history: list[dict], path: Path, rerun: str) -> list[dict]:
    points = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h["loss"],
               "learning_rate": h.get("learning_rate")} for h in log_history if "loss" in h]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(LOSS_COLUMNS))
    w.writeheader()
    w.writerows(points)
    write_atomic(path, buf.getvalue(), rerun)
    return points


def _save_student(trainer, params: Params, out: Path, record: StudentRecord, rerun: str) -> None:
    """Write the student to a temp folder next to `out`, then swap it in (replacing_dir): a killed
    run or a full disk never leaves a half-written checkpoint where DVC or `agora evaluate` would
    take it for a finished one, and the previous checkpoint stays until the new one is whole."""
    import torch

    acc = trainer.accelerator
    with replacing_dir(out, rerun, owner=acc.is_main_process) as tmp:
        acc.wait_for_everyone()  # the main process has emptied tmp
        if acc.num_processes > 1:
            trainer.save_model(str(tmp))  # FSDP: gathers the shards; only the main process writes
        elif params.training.lora is None:
            trainer.model.to(getattr(torch, params.training.save_dtype)).save_pretrained(tmp)
        else:
            trainer.model.save_pretrained(tmp)  # the adapter only (a few MB)
        if acc.is_main_process:
            _sort_target_modules(tmp / "adapter_config.json")
            trainer.processing_class.save_pretrained(tmp)
            (tmp / STUDENT_FILE).write_text(record.to_json())
    acc.wait_for_everyone()


def _sort_target_modules(config: Path) -> None:
    """PEFT keeps a LoRA's target_modules as a set and saves them in the set's order, which changes
    with Python's string hashing from one process to the next: the same training wrote another
    adapter_config.json each time, so DVC saw a new checkpoint and re-ran its evaluation."""
    if not config.is_file():
        return
    cfg = json.loads(config.read_text())
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
        config.write_text(json.dumps(cfg, indent=2, sort_keys=True))  # PEFT's own layout




def _write_untrained(params: Params, setting: Setting, info: dict, model_path: str | None) -> dict:
    """A dataset with no valid instance trains nothing: the student is S_0 itself.

    The checkpoint folder then holds only student.json saying so; evaluation loads the base weights
    for it (evaluated as a student: zero-shot), so the setting still gets scores and a PGR (near 0,
    what no data buys) and the generator's averages keep all nine settings instead of silently
    skipping its failures.
    """
    why = (f"has only contaminated instances, all {info['dropped_examples']} left out (decontamination.drop)"
           if info["dropped_examples"] else "has no valid instance (see its manifest's shortfall_reason)")
    reason = f"{info['dataset']} {why}: the student is the base model, untrained"
    student = StudentRecord(generator=setting.name, domain=setting.domain, method=setting.method, trained=False,
                            untrained_reason=reason, base=params.student.base,
                            base_path=model_path or params.student.base, lora=params.training.lora is not None,
                            system_prompt=params.student.system_prompt, **info)
    rerun = _rerun(setting)
    with replacing_dir(setting.checkpoint(params), rerun) as tmp:
        (tmp / STUDENT_FILE).write_text(student.to_json())
    paths = setting.train_logs(params)
    _write_loss_curve([], paths["loss"], rerun)
    metrics = TrainingMetrics(trained=False, untrained_reason=reason, final_loss=None, first_loss=None,
                              train_loss=None, steps=0, epochs=0.0, examples=0, seed_examples=0,
                              wall_s=0.0, train_tokens=0, tokens_per_s=None)
    write_atomic(paths["metrics"], metrics.to_json(), rerun)
    return metrics.model_dump()


def train_student(params: Params, generator: str, domain: str, method: str, *,
                  model_path: str | None = None) -> dict:
    """Fine-tune student.base on one dataset; write the checkpoint, metrics and loss curve."""
    setting = Setting(generator, method, domain)
    examples, info = training_examples(params, generator, domain, method)
    if not examples:  # before the imports below: they take ~1.5 s, and nothing is trained
        return _write_untrained(params, setting, info, model_path)
    import torch
    import transformers
    import trl

    transformers.set_seed(params.training.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agora-train-") as scratch:
        trainer = build_trainer(params, examples, scratch, model_path)
        progress = _training_progress(f"train {setting.name} {method} {domain}")
        trainer.add_callback(progress)
        try:
            result = trainer.train()
        finally:
            progress.close()  # on_train_end is not called when a step raises
    wall = time.perf_counter() - started
    paths, rerun = setting.train_logs(params), _rerun(setting)
    main = trainer.accelerator.is_main_process
    curve = _write_loss_curve(trainer.state.log_history, paths["loss"], rerun) if main else []
    # Tokens the model was trained on: the tokenized dataset once per epoch (steps cap it if set).
    tokens = int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * params.training.num_epochs)
    student = StudentRecord(
        generator=generator, domain=domain, method=method,
        trained=True, base=params.student.base, base_path=model_path or params.student.base,
        lora=params.training.lora is not None, system_prompt=params.student.system_prompt,
        training=params.training.model_dump(mode="json"), **info,
        versions={"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        parallelism=_parallelism(trainer),
    )
    _save_student(trainer, params, setting.checkpoint(params), student, rerun)
    metrics = TrainingMetrics(
        trained=True,
        final_loss=curve[-1]["loss"] if curve else None,
        first_loss=curve[0]["loss"] if curve else None,
        train_loss=round(float(result.training_loss), 6),
        steps=int(trainer.state.global_step),
        epochs=float(params.training.num_epochs),
        examples=info["examples"],
        seed_examples=info["seed_examples"],
        wall_s=round(wall, 2),
        train_tokens=tokens,
        tokens_per_s=round(tokens / wall, 1) if params.training.max_steps < 0 else None,
    )
    if main:
        write_atomic(paths["metrics"], metrics.to_json(), rerun)
    return metrics.model_dump()


def launch_command(config_file: str, generator: str, domain: str, method: str, params_file: str) -> list[str]:
    """`accelerate launch` for a multi-GPU run; the config is parsed first, so a broken file fails
    here in one line rather than after the processes have started."""
    from accelerate.commands.config.config_args import load_config_from_file

    if not Path(config_file).is_file():
        raise ParamsError(f"training.accelerate_config: {config_file} not found; see configs/accelerate_fsdp.yaml")
    try:
        cfg = load_config_from_file(config_file)
    except Exception as e:  # accelerate raises assorted errors for bad files
        raise ParamsError(f"{config_file}: not a valid accelerate config ({type(e).__name__}: {e}); "
                          f"regenerate it with `accelerate config`") from None
    from accelerate.utils import DistributedType

    kinds = [k.value for k in DistributedType]
    kind = getattr(cfg, "distributed_type", None)
    if getattr(kind, "value", kind) not in kinds:
        raise ParamsError(f"{config_file}: distributed_type = {getattr(cfg, 'distributed_type', None)!r} is not "
                          f"one of {', '.join(kinds)}; regenerate it with `accelerate config`")
    from agorabench.models.launchers import free_port

    # Launches side by side (the pipeline's lanes) would all rendezvous on accelerate's default port
    # 29500, and the second would fail to bind it: a config without a port gets a free one.
    port = [] if getattr(cfg, "main_process_port", None) else ["--main_process_port", str(free_port())]
    launcher = str(Path(sys.executable).with_name("accelerate"))
    return [launcher if Path(launcher).exists() else "accelerate", "launch", "--config_file", config_file, *port,
            "-m", "agorabench.training", "--generator", generator, "--domain", domain, "--method", method,
            "--params", params_file]


def run_launch(command: list[str]) -> int:
    """Run an `accelerate launch` (launch_command) in a process group of its own, under the group
    launcher: if this process dies, even by kill -9, the launch stops with it, and each worker (which
    torchrun puts out of the group) with its launcher (main: die_with_parent). A plain child would
    leave the launcher and its workers training, holding memory and GPUs."""
    from agorabench.models.launchers import start_in_group, stop_groups

    proc = start_in_group(command, stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    finally:
        stop_groups([proc])  # Ctrl-C (the terminal's SIGINT does not reach the new group) or an error


def fsdp_without_accelerators() -> bool:
    """Let an FSDP launch on a machine without accelerators shard for real. accelerate (1.15) turns
    FSDP on only for accelerator backends: on a CPU it would quietly run the FSDP config as plain data
    parallel. torch's FSDP2 shards over gloo on a CPU, so the state accelerate builds is switched to
    FSDP with the plugin the Accelerator made from the launch's environment, as accelerate's own FSDP
    branch does on a GPU. That lets the tests and a CPU rehearsal run the paper profile's FSDP path.
    Returns whether the switch is installed (once per process)."""
    import torch

    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true" or torch.cuda.is_available():
        return False
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    accelerator_state_init = AcceleratorState.__init__
    if getattr(accelerator_state_init, "fsdp_without_accelerators", False):
        return True

    def init(self, *args, fsdp_plugin=None, **kwargs):
        accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            if self.mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self.mixed_precision)
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            # The process state too: every later AcceleratorState() copies it over the shared one.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    init.fsdp_without_accelerators = True
    AcceleratorState.__init__ = init
    return True


def main(argv: list[str] | None = None) -> int:
    """What `accelerate launch` runs in each of its processes (launch_command): one training, no Prefect
    (the flow that started the launch is the run's record)."""
    import argparse

    from agorabench.config import load_params

    parser = argparse.ArgumentParser(prog="python -m agorabench.training")
    parser.add_argument("--generator", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    if "LOCAL_RANK" in os.environ:  # a worker of `accelerate launch`: it goes when its launcher goes
        from agorabench.models.launchers import die_with_parent

        die_with_parent()
    fsdp_without_accelerators()
    try:
        train_student(load_params(args.params), args.generator, args.domain, args.method)
    except (ParamsError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
