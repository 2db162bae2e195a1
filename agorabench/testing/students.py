"""A LoRA student folder as `agora train` writes one, without training: for tests and benchmarks/ scripts
that need a student's adapter on a packaged base model."""
from __future__ import annotations

from pathlib import Path


def random_lora_student(folder: Path, seed: int, base: str = "smollm2-135m-instruct", rank: int = 8,
                        scale: float = 1.0) -> str:
    """A (random, untrained) adapter of `base` (a packaged name or a model folder) on the modules our
    training targets, saved with its tokenizer, and its student.json, which names the weights: a record
    of its own per seed. `scale` multiplies the adapter's update (a trained update is small: 0.04-0.06%
    of a weight on average in the default)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agorabench.config import LoraConfig as OurLora
    from agorabench.models.checkpoints import STUDENT_FILE, StudentRecord
    from agorabench.models.packaged import resolve_model

    torch.manual_seed(seed)
    folder_of_base = resolve_model(base)
    model = AutoModelForCausalLM.from_pretrained(folder_of_base, dtype=torch.float32)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=OurLora().target_modules,
                      task_type="CAUSAL_LM", init_lora_weights=False)  # random B: the adapter changes answers
    student = get_peft_model(model, lora)
    with torch.no_grad():
        for name, weight in student.named_parameters():
            if "lora_B" in name:
                weight.mul_(scale)
    student.save_pretrained(folder)
    AutoTokenizer.from_pretrained(folder_of_base).save_pretrained(folder)  # as `agora train` saves it
    record = StudentRecord(generator="g", method="response_generation", domain="general", trained=True,
                           base=base, base_path=base, lora=True, system_prompt=None, dataset="d.jsonl",
                           generated_examples=1, seed_examples=0, examples=1, examples_sha256=f"{seed:064d}")
    (folder / STUDENT_FILE).write_text(record.to_json())
    return str(folder)
