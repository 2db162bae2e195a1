"""Student fine-tuning with the real TRL SFTTrainer, on a tiny random Llama that uses SmolLM2's
tokenizer and chat template (so the masking is checked with a real template, in seconds)."""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path

import orjson
import pytest

from agorabench.setting import Setting

from agorabench.config import ParamsError, load_params
from tests.conftest import write_params

ROWS = [
    {"instruction": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}. [RESULT] {a + b} [/RESULT]",
     "config": "gsm8k"}
    for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4), (6, 1), (8, 3)]
]


def make_params(tmp_path: Path, tiny_student: str, **training):
    overrides = {"student.base": tiny_student, "training.max_length": 256, "training.packing": False,
                 "training.per_device_batch_size": 4, "training.gradient_accumulation_steps": 1,
                 "training.num_epochs": 2, "training.learning_rate": 3e-3, "training.lora": None,
                 "training.output_dir": str(tmp_path / "data/checkpoints"),
                 "training.logs_dir": str(tmp_path / "data/train"),
                 **{f"training.{k}": v for k, v in training.items()}}
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **overrides))
    ds = Path(params.generation.output_dir) / "fake/response_generation/math.jsonl"
    ds.parent.mkdir(parents=True, exist_ok=True)
    ds.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS))
    return params


def prompt_token_labels(trainer) -> tuple[int, int]:
    """(prompt tokens that carry a label, response tokens that carry one), over every example.

    The prompt length is computed independently of TRL: the chat template applied to the system and
    user turns with the generation prompt, i.e. everything the model sees before the response.
    """
    tok = trainer.processing_class
    leaked = trained = 0
    for row, example in zip(trainer.train_dataset, trainer._agora_examples):
        prompt_ids = tok.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True,
                                             return_dict=False)
        labels = trainer.data_collator([row])["labels"][0].tolist()
        assert row["input_ids"][: len(prompt_ids)] == list(prompt_ids)  # same tokens as the template
        leaked += sum(1 for label in labels[: len(prompt_ids)] if label != -100)
        trained += sum(1 for label in labels[len(prompt_ids):] if label != -100)
    return leaked, trained


def _trainer(params, tmp_path):
    from agorabench.training.sft import build_trainer, training_examples

    examples, _ = training_examples(params, "fake", "math", "response_generation")
    trainer = build_trainer(params, examples, str(tmp_path / "scratch"))
    trainer._agora_examples = examples
    return trainer


def test_no_prompt_token_carries_a_label(tmp_path, tiny_student):
    trainer = _trainer(make_params(tmp_path, tiny_student), tmp_path)
    leaked, trained = prompt_token_labels(trainer)
    assert leaked == 0
    assert trained > 8 * 10  # every response (and its end-of-turn token) is trained on


def test_canary_full_sequence_loss_is_caught(tmp_path, tiny_student, monkeypatch):
    """The same check on a trainer that trains on whole sequences must see leaked labels."""
    import dataclasses

    import agorabench.training.sft as training

    real = training.sft_config
    monkeypatch.setattr(training, "sft_config",
                        lambda *a: dataclasses.replace(real(*a), completion_only_loss=False))
    trainer = _trainer(make_params(tmp_path, tiny_student), tmp_path)
    leaked, _ = prompt_token_labels(trainer)
    assert leaked > 8 * 10


def test_cpu_loss_equals_trls_fused_head_loss(tmp_path, tiny_student):
    """On a CPU our trainer takes the model's own loss instead of TRL's fused LM head (faster there);
    on the same batch both give the same masked mean NLL. The canary: with the prompt tokens
    labelled too, the two losses part, so the comparison would catch a mask that got lost."""
    import torch
    from trl import SFTTrainer

    trainer = _trainer(make_params(tmp_path, tiny_student), tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.train()
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        trls = SFTTrainer.compute_loss(trainer, model, dict(batch))
        unmasked = dict(batch, labels=torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100))
        ours_unmasked = trainer.compute_loss(model, unmasked)
    assert (batch["labels"] == -100).any()
    assert ours.item() == pytest.approx(trls.item(), rel=1e-4)
    assert ours_unmasked.item() != pytest.approx(trls.item(), rel=1e-3)
    assert trainer._metrics["train"]["num_tokens"][0] > 0  # TRL's token count is still logged


def test_train_student_writes_checkpoint_metrics_and_loss_curve(tmp_path, tiny_student):
    from transformers import AutoModelForCausalLM

    from agorabench.training.sft import train_student

    params = make_params(tmp_path, tiny_student)
    metrics = train_student(params, "fake", "math", "response_generation")
    out = Setting("fake", "response_generation", "math").checkpoint(params)
    student = json.loads((out / "student.json").read_text())
    assert student["examples"] == 8 and student["seed_examples"] == 0 and not student["lora"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert str(next(model.parameters()).dtype) == "torch.bfloat16"  # save_dtype
    assert metrics["steps"] == 4  # 8 examples / batch 4 x 2 epochs
    assert metrics["final_loss"] < metrics["first_loss"]  # it learns
    rows = list(csv.DictReader(open(Setting("fake", "response_generation", "math").train_logs(params)["loss"])))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    # epoch_decay (the official StepLR): epoch 2 runs at 0.85 x the learning rate of epoch 1
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-3 * 0.85)
    assert not list(out.parent.glob(".*.tmp*"))  # the swap left nothing behind


def test_lora_saves_only_an_adapter(tmp_path, tiny_student):
    from agorabench.training.sft import train_student

    params = make_params(tmp_path, tiny_student, lora={"r": 4, "alpha": 8, "dropout": 0.0}, max_steps=1)
    train_student(params, "fake", "math", "response_generation")
    out = Setting("fake", "response_generation", "math").checkpoint(params)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert json.loads((out / "student.json").read_text())["lora"] is True


def test_a_lora_student_trains_in_bf16_on_a_cpu_that_computes_it(tmp_path, tiny_student, monkeypatch):
    from agorabench.training.sft import build_trainer

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    examples = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    for native in (True, False):
        monkeypatch.setattr("agorabench.models.cpu_weights.native_bf16", lambda: native)
        lora = build_trainer(make_params(tmp_path, tiny_student, lora={"r": 4, "alpha": 8, "dropout": 0.0}),
                             examples, str(tmp_path / "out"))
        frozen = {str(p.dtype) for p in lora.model.parameters() if not p.requires_grad}
        trained = {str(p.dtype) for p in lora.model.parameters() if p.requires_grad}
        # native bf16: the frozen base in bf16 under bf16 autocast, the adapter float32; else all float32
        assert (lora.args.bf16, frozen, trained) == (
            (True, {"torch.bfloat16"}, {"torch.float32"}) if native else (False, {"torch.float32"}, {"torch.float32"}))
    # canary: full fine-tuning keeps float32 weights on a CPU, native bf16 or not
    monkeypatch.setattr("agorabench.models.cpu_weights.native_bf16", lambda: True)
    full = build_trainer(make_params(tmp_path, tiny_student), examples, str(tmp_path / "out"))
    assert not full.args.bf16 and {str(p.dtype) for p in full.model.parameters()} == {"torch.float32"}


# Trains, then prints the order in which PEFT's own set keeps the saved target modules in this process.
TRAIN_IN_A_PROCESS = """import json, sys
from peft import LoraConfig
from agorabench.config import load_params
from agorabench.training.sft import train_student
train_student(load_params(sys.argv[1]), "fake", "math", "response_generation")
modules = json.load(open(sys.argv[2]))["target_modules"]
print(list(LoraConfig(target_modules=modules).target_modules))
"""


def test_a_lora_checkpoint_is_the_same_bytes_in_every_process(tmp_path, tiny_student):
    """A forced `dvc repro` of a training stage must rewrite the same checkpoint, or DVC re-runs every
    evaluation after it. Python's string hashing differs per process (PYTHONHASHSEED), and PEFT saves
    target_modules in the order of a set."""
    import os
    import subprocess
    import sys


    params = make_params(tmp_path, tiny_student, lora={"r": 4, "alpha": 8, "dropout": 0.0}, max_steps=1)
    out = Setting("fake", "response_generation", "math").checkpoint(params)
    written, orders = [], []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", TRAIN_IN_A_PROCESS, str(tmp_path / "params.yaml"),
                               str(out / "adapter_config.json")], check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True)
        written.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
        orders.append(done.stdout.strip().splitlines()[-1])
    assert written[0] == written[1]
    modules = json.loads(written[0]["adapter_config.json"])["target_modules"]
    assert len(modules) > 2 and modules == sorted(modules)
    # canary: under those two hash seeds the set PEFT keeps really is in another order
    assert orders[0] != orders[1]


def test_instance_generation_also_trains_on_its_seeds(tmp_path, tiny_student):
    from agorabench.training.sft import training_examples

    params = make_params(tmp_path, tiny_student, max_seed_examples=5)
    ds = Path(params.generation.output_dir) / "fake/instance_generation/math.jsonl"
    ds.parent.mkdir(parents=True, exist_ok=True)
    ds.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS[:3]))
    examples, info = training_examples(params, "fake", "math", "instance_generation")
    assert (info["generated_examples"], info["seed_examples"], len(examples)) == (3, 5, 8)
    assert examples[0]["prompt"][0] == {"role": "system", "content": "You are a helpful AI assistant."}
    # response generation does not add seeds
    _, rg = training_examples(params, "fake", "math", "response_generation")
    assert rg["seed_examples"] == 0


def test_empty_dataset_leaves_the_base_model_as_student(tmp_path, tiny_student):
    """A generator with no valid instance (retry budget spent) must not break the pipeline: the
    student is S_0 itself, marked untrained, and evaluation loads and names the base weights."""
    from agorabench.models.in_process import load_model, model_identity
    from agorabench.training.sft import train_student
    from agorabench.models.checkpoints import untrained_reason

    params = make_params(tmp_path, tiny_student)
    (Path(params.generation.output_dir) / "fake/response_generation/math.jsonl").write_bytes(b"")
    metrics = train_student(params, "fake", "math", "response_generation")
    out = Setting("fake", "response_generation", "math").checkpoint(params)
    assert metrics["trained"] is False and metrics["steps"] == 0 and "no valid instance" in metrics["untrained_reason"]
    assert untrained_reason(out) == metrics["untrained_reason"]
    assert sorted(p.name for p in out.iterdir()) == ["student.json"]  # no weights of its own
    assert json.loads(Setting("fake", "response_generation", "math").train_logs(params)["metrics"].read_text())["steps"] == 0
    assert model_identity(str(out)) == model_identity(tiny_student)  # answers shared with the base model
    model, _ = load_model(str(out))
    assert model.config.hidden_size == 32

    # canary: a student trained on data is its own model, with its own identity and no reason
    (Path(params.generation.output_dir) / "fake/response_generation/math.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in ROWS))
    assert train_student(params, "fake", "math", "response_generation")["trained"] is True
    assert untrained_reason(out) is None
    assert model_identity(str(out)) != model_identity(tiny_student)


def test_missing_dataset_is_one_line_naming_the_command(tmp_path, tiny_student):
    from agorabench.training.sft import training_examples

    params = make_params(tmp_path, tiny_student)
    with pytest.raises(ParamsError) as e:
        training_examples(params, "fake", "code", "quality_enhancement")
    assert "agora generate --generator fake --domain code --method quality_enhancement" in str(e.value)
    assert "\n" not in str(e.value)


def test_accelerate_fsdp_config_dry_run(tmp_path, tiny_student):
    """The shipped FSDP config parses with accelerate's own loader and gives a launch command."""
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import REPO

    params = make_params(tmp_path, tiny_student)
    params_file = tmp_path / "params.yaml"
    result = CliRunner().invoke(app, ["train", "-g", "fake", "-d", "math", "-m", "response_generation",
                                      "--params", str(params_file), "--accelerate",
                                      str(REPO / "configs/accelerate_fsdp.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "8 examples" in result.output
    assert "launch --config_file" in result.output and "-m agorabench.training --generator fake" in result.output
    assert not Path(params.training.output_dir).exists()  # a dry run trains nothing
    # canary: a broken config is one line naming the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: [not, a, type]\n")
    result = CliRunner().invoke(app, ["train", "-g", "fake", "-d", "math", "-m", "response_generation",
                                      "--params", str(params_file), "--accelerate", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "bad.yaml" in result.output


def test_launches_side_by_side_rendezvous_on_ports_of_their_own(tmp_path):
    """The shipped config names no rendezvous port, so each launch gets a free one: two lanes training at
    once would otherwise both bind accelerate's default 29500. A port the config names is kept."""
    from agorabench.training.sft import launch_command
    from tests.conftest import REPO

    def port(command):
        return command[command.index("--main_process_port") + 1] if "--main_process_port" in command else None

    shipped = str(REPO / "configs/accelerate_fsdp.yaml")
    ports = [port(launch_command(shipped, "g", "math", "response_generation", "p.yaml")) for _ in range(3)]
    assert all(p and p.isdigit() for p in ports) and len(set(ports)) > 1  # the kernel may repeat one, not all
    pinned = cpu_accelerate_config(tmp_path)  # it names a port
    assert port(launch_command(str(pinned), "g", "math", "response_generation", "p.yaml")) is None


def cpu_accelerate_config(tmp_path: Path, name: str = "cpu.yaml", **changes) -> Path:
    """The shipped FSDP config set to 2 processes on this CPU, on a rendezvous port of its own
    (another run's may hold the default)."""
    import yaml

    from agorabench.models.launchers import free_port
    from agorabench.testing.tiny_models import cpu_fsdp_config
    from tests.conftest import REPO

    config = cpu_fsdp_config(REPO / "configs/accelerate_fsdp.yaml", main_process_port=free_port(), **changes)
    (tmp_path / name).write_text(yaml.safe_dump(config))
    return tmp_path / name


def _launch_processes(params_file: Path) -> dict[int, list[bytes]]:
    """pid -> argv of the live processes of a launch that trains with `params_file`: the group
    launcher, `accelerate launch` (torchrun's agent) and its workers."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"agorabench.training" in argv and str(params_file).encode() in argv and state not in ("Z", "X"):
            found[int(proc.name)] = argv
    return found


def _workers(params_file: Path) -> list[int]:
    """The training workers alone: `python -u -m agorabench.training ...`, as torchrun starts them."""
    return [pid for pid, argv in _launch_processes(params_file).items()
            if argv[1:4] == [b"-u", b"-m", b"agorabench.training"]]


def _workers_after_kill_9(parent: list[str], params_file: Path, wait_s: float, victim=None,
                          env: dict[str, str] | None = None) -> list[int]:
    """Start `parent` (which starts an accelerate launch) with `env` added to ours; once both workers run,
    kill -9 the process victim(pids) picks (default: `parent`) and return the workers still alive
    `wait_s` seconds later. Whatever of the launch is left is killed after the look."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 120
        while len(_workers(params_file)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the launch did not start two workers"
            time.sleep(0.2)
        os.kill(victim(_launch_processes(params_file)) if victim else proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + wait_s
        while _workers(params_file) and time.monotonic() < deadline:
            time.sleep(0.2)
        return _workers(params_file)
    finally:
        proc.kill()
        proc.wait()
        for pid in _launch_processes(params_file):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _accelerate_agent(processes: dict[int, list[bytes]]) -> int:
    return next(pid for pid, argv in processes.items() if b"launch" in argv and argv[1].endswith(b"accelerate"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_kill_9_of_agora_train_stops_its_accelerate_launch(tmp_path, tiny_student, prefect_api_env):
    """A killed `agora train --accelerate` takes its training workers with it: the launch runs in a
    process group under the group launcher, and each worker (in a session of its own, from torchrun)
    goes when its parent goes, even when that is `accelerate launch` killed by -9. The canary starts
    the same launch as a plain child, whose workers go on training after their parent is gone."""
    from agorabench.training.sft import launch_command

    make_params(tmp_path, tiny_student, num_epochs=1000)  # trains for minutes: still running at the kill
    params_file = tmp_path / "params.yaml"
    config = cpu_accelerate_config(tmp_path)
    agora = [str(Path(sys.executable).with_name("agora")), "train", "-g", "fake", "-d", "math", "-m",
             "response_generation", "--params", str(params_file), "--accelerate", str(config)]
    # The session's Prefect server: a killed `agora train` would leave the temporary server it starts
    # without one (Prefect's own subprocess, which has no parent-death signal) running after the test.
    assert _workers_after_kill_9(agora, params_file, 30, env=prefect_api_env) == []
    assert _workers_after_kill_9(agora, params_file, 10, victim=_accelerate_agent, env=prefect_api_env) == []
    plain = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    command = launch_command(str(config), "fake", "math", "response_generation", str(params_file))
    assert len(_workers_after_kill_9([sys.executable, "-c", plain, *command], params_file, 3)) == 2


@pytest.mark.slow
def test_accelerate_launch_trains_one_student_in_two_processes(tmp_path, tiny_student):
    """`agora train --accelerate` for real, with the shipped FSDP config set to 2 processes on this CPU:
    FSDP2 over gloo, the weights sharded across the processes (accelerate alone would run the config as
    plain data parallel on a CPU; the canary launches that). Each process takes its share of every
    batch, so an epoch has half the steps of one process (trained here in one process); rank 0 writes
    the one checkpoint, gathered from the shards, which loads."""
    from typer.testing import CliRunner

    from agorabench.models.in_process import load_model
    from agorabench.training.sft import train_student
    from flows.cli import app

    params = make_params(tmp_path, tiny_student)
    cpu_accelerate_config(tmp_path)
    result = CliRunner().invoke(app, ["train", "-g", "fake", "-d", "math", "-m", "response_generation",
                                      "--params", str(tmp_path / "params.yaml"), "--accelerate", str(tmp_path / "cpu.yaml")])
    assert result.exit_code == 0, result.output
    setting = Setting("fake", "response_generation", "math")
    metrics = json.loads(setting.train_logs(params)["metrics"].read_text())
    # 8 examples, 4 per process and step, 2 epochs: 2 steps in two processes, 4 in one.
    assert metrics["trained"] and metrics["examples"] == 8 and metrics["steps"] == 2
    record = json.loads((setting.checkpoint(params) / "student.json").read_text())
    assert record["parallelism"] == {"distributed_type": "FSDP", "processes": 2, "sharded": True}
    model, _ = load_model(str(setting.checkpoint(params)))
    assert model.config.hidden_size == 32
    assert model.model.embed_tokens.weight.shape[0] == model.config.vocab_size  # gathered whole, not a shard
    # Canary: the same launch with a data-parallel config keeps every weight whole in each process.
    (tmp_path / "ddp").mkdir()
    ddp_params = make_params(tmp_path / "ddp", tiny_student)
    cpu_accelerate_config(tmp_path, "ddp.yaml", distributed_type="MULTI_GPU")  # plain DDP, on this CPU over gloo
    result = CliRunner().invoke(app, ["train", "-g", "fake", "-d", "math", "-m", "response_generation",
                                      "--params", str(tmp_path / "ddp/params.yaml"), "--accelerate", str(tmp_path / "ddp.yaml")])
    assert result.exit_code == 0, result.output
    ddp = json.loads((setting.checkpoint(ddp_params) / "student.json").read_text())
    assert ddp["parallelism"] == {"distributed_type": "MULTI_CPU", "processes": 2, "sharded": False}
    (tmp_path / "alone").mkdir()
    alone = train_student(make_params(tmp_path / "alone", tiny_student), "fake", "math", "response_generation")
    assert alone["steps"] == 4
