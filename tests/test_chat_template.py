"""The paper's chat format for base models: a checkpoint that ships no chat template is trained, scored for
perplexity and evaluated in the Llama-3 format (models/chat_template.py), through the real TRL trainer and
the in-process transformers paths, on a tiny random Llama whose tokenizer has the Llama-3 special tokens
and no template (a base checkpoint like Llama-3.1-8B's)."""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from agorabench.config import ParamsError, load_params
from agorabench.models import chat_template as templates
from agorabench.testing.tiny_models import save_tiny_llama
from tests.conftest import write_params

SYSTEM = "You are a helpful AI assistant."
# The official recipe's prompt (docs/paper.md, the training sample format), for a system turn and "Hi".
PAPER_PROMPT = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful AI assistant."
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
ROWS = [{"instruction": f"What is {a} plus {b}?", "response": f"{a + b}. [RESULT] {a + b} [/RESULT]", "config": "gsm8k"}
        for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]


def check_paper_format(rendered: str) -> None:
    """A prompt in the paper's Llama-3 format: its headers and system turn, and no Llama 3.1 date lines."""
    assert rendered.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM + "<|eot_id|>")
    assert "<|start_header_id|>user<|end_header_id|>\n\n" in rendered
    assert rendered.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "Cutting Knowledge Date" not in rendered and "Today Date" not in rendered


# Llama-3's pre-tokenizer rule (its tokenizer.json): line breaks are split from the text after them, so
# the "\n\n" that ends a prompt is the same token in the prompt alone and in prompt + response.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    """A 2-layer random Llama whose tokenizer has no chat template: SmolLM2's vocabulary with Llama-3's
    special tokens and pre-tokenizer rule."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import AutoTokenizer

    from agorabench.models.packaged import hf_model_dir

    tok = AutoTokenizer.from_pretrained(hf_model_dir("smollm2-135m-instruct"))
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.add_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], special_tokens=True)
    tok.bos_token = "<|begin_of_text|>"
    tok.chat_template = None
    return save_tiny_llama(tok, tmp_path_factory.mktemp("tiny-base"))


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _render(tok, user: str = "Hi") -> str:
    return tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
                                   tokenize=False, add_generation_prompt=True)


def test_a_checkpoint_without_a_template_gets_the_llama3_format(tiny_base):
    tok = _tokenizer(tiny_base)
    assert tok.chat_template is None
    with pytest.raises(ValueError, match="chat_template is not set"):  # canary: it really ships none
        _render(tok)
    templates.apply(tok, None)
    assert _render(tok) == PAPER_PROMPT
    check_paper_format(_render(tok))
    full = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                                   tokenize=False)
    assert full.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>")
    assert templates.end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("<|eot_id|>")]


def test_the_format_check_catches_llama31_date_lines():
    """Canary for check_paper_format: Llama 3.1's own template writes date lines into the system turn."""
    dated = PAPER_PROMPT.replace("system<|end_header_id|>\n\n", "system<|end_header_id|>\n\nCutting Knowledge Date: "
                                 "December 2023\nToday Date: 26 Jul 2024\n\n")
    check_paper_format(PAPER_PROMPT)
    with pytest.raises(AssertionError):
        check_paper_format(dated)


def test_a_configured_template_wins_and_null_keeps_the_tokenizers_own(tiny_student, tmp_path):
    own = _tokenizer(tiny_student)  # SmolLM2's ChatML
    assert "<|im_start|>" in _render(templates.apply(own, None))
    assert templates.end_of_turn_ids(own) == []  # ChatML's end of turn is its eos already
    llama3 = templates.apply(_tokenizer(tiny_student), "llama3")
    assert "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" in _render(llama3)
    custom = tmp_path / "plain.jinja"
    custom.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    assert _render(templates.apply(_tokenizer(tiny_student), str(custom))) == f"system: {SYSTEM}\nuser: Hi\n"
    assert templates.digest(None) is None and templates.digest("llama3") != templates.digest(str(custom))
    with pytest.raises(ParamsError, match="student.chat_template: nope.jinja is not a file; give 'llama3'"):
        templates.apply(_tokenizer(tiny_student), "nope.jinja")


# ---------------------------------------------------------------------------------------------
# Training, perplexity and evaluation of a base model without a template
# ---------------------------------------------------------------------------------------------


def _params(tmp_path: Path, base: str, **extra):
    overrides = {"student.base": base, "student.reference": base, "training.max_length": 128,
                 "training.packing": False, "training.per_device_batch_size": 4,
                 "training.gradient_accumulation_steps": 1, "training.max_steps": 1, "training.lora": None,
                 "training.output_dir": str(tmp_path / "data/checkpoints"), "training.logs_dir": str(tmp_path / "data/train"),
                 "evaluation.limit": 2, "evaluation.limits": {}, "evaluation.base_fewshot": 1, "evaluation.batch_size": 2,
                 "evaluation.decoding.max_new_tokens": 4, "evaluation.output_dir": str(tmp_path / "data/eval"), **extra}
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:9", **overrides))
    data = Path(params.generation.output_dir) / "fake/response_generation/math.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS))
    return params


def test_training_a_base_without_a_template_uses_the_llama3_format(tmp_path, tiny_base):
    from agorabench.training.sft import build_trainer, train_student, training_examples

    params = _params(tmp_path, tiny_base)
    examples, _ = training_examples(params, "fake", "math", "response_generation")
    trainer = build_trainer(params, examples, str(tmp_path / "scratch"))
    tok = trainer.processing_class
    row = trainer.train_dataset[0]
    text = tok.decode(row["input_ids"])
    header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    check_paper_format(text[: text.index(header) + len(header)])
    assert text.endswith(ROWS[0]["response"] + "<|eot_id|>")
    labels = trainer.data_collator([row])["labels"][0].tolist()
    trained = [t for t in labels if t != -100]
    assert tok.decode(trained) == ROWS[0]["response"] + "<|eot_id|>"  # the answer and its end of turn, nothing else

    train_student(params, "fake", "math", "response_generation")
    saved = _tokenizer(str(Path(params.training.output_dir) / "fake/response_generation/math"))
    assert saved.chat_template == templates.LLAMA3_FILE.read_text()  # the student keeps its format


def test_perplexity_of_a_base_without_a_template_scores_the_llama3_format(tiny_base):
    from agorabench.intrinsic.perplexity import encode_example, load_causal_lm, perplexities

    _, tok = load_causal_lm(tiny_base, "cpu")
    ids, n_prompt = encode_example(tok, "Hi", "Yo", SYSTEM)
    check_paper_format(tok.decode(ids[:n_prompt]))
    assert tok.decode(ids[n_prompt:]) == "Yo<|eot_id|>"
    rows = perplexities(tiny_base, [("Hi", "Yo"), ("What is 1 plus 2?", "3")], system_prompt=SYSTEM)
    assert all(r["perplexity"] > 1 and r["response_tokens"] >= 2 for r in rows)


@pytest.fixture
def rendered_prompts(monkeypatch):
    """What every in-process answerer fed its model: the conversations rendered with its own tokenizer."""
    from agorabench.models.in_process import TransformersAnswerer

    seen: list[dict] = []
    real = TransformersAnswerer._generate_batch

    def spy(self, batch, decoding, sample_index, offset):
        out = real(self, batch, decoding, sample_index, offset)
        for messages, completion in zip(batch, out):
            text = self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            seen.append({"text": text, "tokens": len(self._tok(text, add_special_tokens=False)["input_ids"]),
                         "input_tokens": completion.input_tokens, "stops": list(self._stops),
                         "identity": dict(self.identity)})
        return out

    monkeypatch.setattr(TransformersAnswerer, "_generate_batch", spy)
    return seen


def test_evaluating_a_base_and_its_student_without_a_template(tmp_path, tiny_base, rendered_prompts):
    from agorabench.evaluation.run import evaluate, output_paths, resolve_model_ref
    from agorabench.training.sft import train_student

    params = _params(tmp_path, tiny_base)
    evaluate(params, "base", "gsm8k")  # S_Ø, few-shot
    train_student(params, "fake", "math", "response_generation")
    evaluate(params, "student:fake/response_generation/math", "gsm8k")
    assert len(rendered_prompts) == 4
    eot = _tokenizer(tiny_base).convert_tokens_to_ids("<|eot_id|>")
    for seen in rendered_prompts:
        check_paper_format(seen["text"])
        assert seen["input_tokens"] == seen["tokens"]  # what was rendered is what the model read
        assert seen["stops"] == [eot]  # and its answers end at the end of turn
    assert [s["text"].count("<|start_header_id|>assistant") for s in rendered_prompts] == [2, 2, 1, 1]  # 1 demo
    items = pq.read_table(output_paths(params, resolve_model_ref(params, "base"), "gsm8k")["items"]).to_pylist()
    assert json.loads(items[0]["prompt"])[0] == {"role": "system", "content": SYSTEM}


def test_a_configured_template_is_used_and_keys_its_answers(tmp_path, tiny_student, rendered_prompts):
    from agorabench.evaluation.run import evaluate

    own = _params(tmp_path / "own", tiny_student, **{"evaluation.base_fewshot": 0})
    paper = _params(tmp_path / "paper", tiny_student, **{"evaluation.base_fewshot": 0, "student.chat_template": "llama3"})
    evaluate(own, "base", "gsm8k")
    evaluate(paper, "base", "gsm8k")
    assert [("<|im_start|>user" in s["text"]) for s in rendered_prompts] == [True, True, False, False]
    for seen in rendered_prompts[2:]:  # SmolLM2's own BOS, then the Llama-3 turns
        check_paper_format(seen["text"].replace(_tokenizer(tiny_student).bos_token, "<|begin_of_text|>", 1))
    # The two formats are different requests: the store never hands one the other's answers.
    assert "chat_template" not in rendered_prompts[0]["identity"]
    assert rendered_prompts[2]["identity"]["chat_template"] == templates.digest("llama3")
