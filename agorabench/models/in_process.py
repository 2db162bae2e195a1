"""A model loaded in this process, as an Answerer: transformers, batched generation.

Students, the anchors and a local generator scored on its own problem solving are answered here when
vLLM is not installed (with it, a vLLM server answers them: models/served.py). What every way of
answering shares, the request key and the store, is models/answering.py. Also here: what names a
model folder's answers (model_identity), what to load for it (weights_of, load_model) and a LoRA
student's merged weights for a server to load (save_merged).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from agorabench.models.answering import Answerer, Decoding
from agorabench.models import chat_template as templates
from agorabench.models.checkpoints import STUDENT_FILE, student_record
from agorabench.models.store import Completion, RequestStore

def model_identity(path: str) -> str:
    """What names a model's weights in the request store.

    A student folder carries student.json (its data hash and full training config: same file, same
    weights); a packaged model is named by its GGUF sha256; anything else by its path or hub id.
    """
    from agorabench.models.packaged import PACKAGED_MODELS

    if path in PACKAGED_MODELS:
        return f"packaged:{path}:{PACKAGED_MODELS[path]['sha256']}"
    info = student_record(path)
    if info is not None:
        if not info.trained:  # an empty dataset: the base weights, shared by all such students
            return model_identity(info.base_path)
        return "student:" + hashlib.sha256((Path(path) / STUDENT_FILE).read_bytes()).hexdigest()
    return f"model:{path}"


def weights_of(path: str) -> tuple[str, str | None]:
    """(folder or hub id to load, its LoRA base model or None) for a model reference: a student
    trained on nothing is the base model itself; a LoRA student is its adapter on top of its base."""
    from agorabench.models.packaged import resolve_model

    info = student_record(path)
    if info is not None and not info.trained:
        path = info.base_path
    resolved = resolve_model(path)
    if (Path(resolved) / "adapter_config.json").is_file():
        return resolved, resolve_model(student_record(resolved).base_path)
    return resolved, None


def load_model(path: str, dtype=None, cpu_weights: str | None = None):
    """(model, tokenizer) from a packaged name, a folder (full weights or a LoRA adapter) or a hub id;
    `cpu_weights` "bfloat16" or "int8": those weights on a CPU (agorabench/models/cpu_weights.py), after a LoRA merge."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agorabench.models.cpu_weights import load_dtype, quantize_model

    resolved, base = weights_of(path)
    dtype = dtype or load_dtype(cpu_weights)
    if base is not None:
        from peft import PeftModel

        # Merge in float32, then cast. A LoRA update is far below bfloat16's spacing (a default
        # student's mean |dW|/|W| was 0.04%, the spacing 0.4-0.8%), so added to weights already
        # rounded to bfloat16 it mostly rounds away: merged in bfloat16, the default's student of
        # Qwen's math responses kept 0.34 of its 0.75-nat drop in training-set loss; merged in
        # float32 and then cast, 0.69.
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, resolved).merge_and_unload().to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(resolved)
    tok.padding_side = "left"  # batched generation continues every prompt from its last token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return quantize_model(model, cpu_weights), tok


def save_merged(path: str, folder: Path, cpu_weights: str | None = None) -> Path:
    """Write the LoRA student at `path` merged into its base (load_model: merged in float32, then cast to
    `cpu_weights`) as a model folder a server can load, with the student's tokenizer and chat template.
    Rewritten from scratch each time: a folder a killed run left half written is never read."""
    import shutil

    from transformers import AutoTokenizer

    if folder.exists():
        shutil.rmtree(folder)
    model, _ = load_model(path, cpu_weights=cpu_weights)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(weights_of(path)[0]).save_pretrained(folder)  # not load_model's padded one
    return folder


class TransformersAnswerer(Answerer):
    """Batched greedy/sampled generation with transformers, cached per request in the store."""

    backend = "transformers"
    gives_logprobs = True  # from the logits generate() returns (Decoding.top_logprobs)

    def __init__(self, path: str, store: RequestStore, *, batch_size: int = 8, chat_template: str | None = None,
                 seed: int = 42, cpu_weights: str | None = None):
        from agorabench.models.cpu_weights import effective

        self.path, self.batch_size, self.seed = path, batch_size, seed
        self.cpu_weights = effective(cpu_weights)
        # bfloat16 and int8 weights answer differently from float32 ones: another model to the store.
        identity = model_identity(path) + (f"+{self.cpu_weights}" if self.cpu_weights else "")
        # A configured template (student.chat_template) prompts the model differently from its own.
        template = templates.digest(chat_template)
        super().__init__(store, {"backend": self.backend, "model": identity} |
                         ({"chat_template": template} if template else {}))
        self.chat_template = chat_template
        self._model = None

    def sampling(self, decoding: Decoding) -> dict:
        return decoding.as_dict()

    def _load(self):
        if self._model is None:
            self._model, self._tok = load_model(self.path, cpu_weights=self.cpu_weights)
            templates.apply(self._tok, self.chat_template)
            self._stops = templates.end_of_turn_ids(self._tok)
        return self._model, self._tok

    def _compute(self, conversations, decoding: Decoding, sample_index: int):
        # Longest prompts first: batches of similar length waste less padding, and a memory
        # problem shows up in the first batch rather than after an hour.
        size = {i: sum(len(m["content"]) for m in c) for i, c in enumerate(conversations)}
        order = sorted(size, key=lambda i: -size[i])
        for start, chunk in self._batches(order, size):
            yield chunk, self._generate_batch([conversations[i] for i in chunk], decoding, sample_index, start)

    def _batches(self, order: list[int], size: dict[int, int]):
        return batches_of_similar_length(order, size, self.batch_size)

    def _generate_batch(self, batch: list[list[dict]], decoding: Decoding, sample_index: int,
                        offset: int) -> list[Completion]:
        import torch

        model, tok = self._load()
        texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in batch]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        sample = decoding.temperature > 0
        kwargs = {"do_sample": sample, "max_new_tokens": decoding.max_new_tokens,
                  "repetition_penalty": decoding.repetition_penalty, "pad_token_id": tok.pad_token_id}
        if sample:
            kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
        else:  # greedy: sampling knobs a model's generation_config may carry must not leak in
            kwargs.update(temperature=None, top_p=None, top_k=None)
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if any(t not in eos for t in self._stops):  # a base model in a chat format stops at its end of turn
            kwargs["eos_token_id"] = eos + [t for t in self._stops if t not in eos]
        stops = {tok.eos_token_id, tok.pad_token_id, *self._stops}
        if decoding.top_logprobs:  # the model's own distribution at each step, before any sampling knob
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        # Sampling is seeded per batch position, so a resumed run draws what the first one would have.
        torch.manual_seed(self.seed + 1000 * sample_index + offset)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        latency = (time.perf_counter() - started) / len(batch)
        logits = None
        if decoding.top_logprobs:
            out, logits = out.sequences, out.logits
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for b, (row, mask) in enumerate(zip(new, enc["attention_mask"])):
            ids = row.tolist()
            ended = any(t in stops for t in ids)
            n_out = next((j + 1 for j, t in enumerate(ids) if t in stops), len(ids))
            text = tok.decode(ids[:n_out], skip_special_tokens=True)
            logprobs = None
            if logits is not None:
                logprobs = _token_logprobs(tok, ids[:n_out], [step[b] for step in logits], decoding.top_logprobs)
            results.append(Completion(text=text, finish_reason="stop" if ended else "length",
                                      input_tokens=int(mask.sum()), output_tokens=n_out, latency_s=latency,
                                      cost_usd=0.0, logprobs=logprobs))
        return results


def _token_logprobs(tok, ids: list[int], step_logits, k: int):
    """Completion.logprobs from generate()'s raw logits: per reply token (the first LOGPROB_POSITIONS,
    special tokens such as the end of turn left out) its log-probability and the top k there."""
    import torch

    from agorabench.models.store import LOGPROB_POSITIONS

    positions = []
    for token_id, logit in zip(ids, step_logits):
        if token_id in tok.all_special_ids or len(positions) == LOGPROB_POSITIONS:
            break
        logp = torch.log_softmax(logit.float(), dim=-1)
        top = torch.topk(logp, k)
        alternatives = tuple((tok.decode([int(i)]), max(float(v), -1e4)) for v, i in zip(top.values, top.indices))
        positions.append((tok.decode([token_id]), max(float(logp[token_id]), -1e4), alternatives))
    return tuple(positions)


def batches_of_similar_length(order: list[int], size: dict[int, int], batch_size: int, slack: int = 1000):
    """(position of its first item, items) of each batch, taken in `order` (longest first): at most
    `batch_size` items, and none padded by more than its own length or `slack` characters (~250
    tokens), whichever is more. Every prompt of a batch is padded to the longest: in the default run a
    general student's batch of ten, one 2,086-token prompt among 50-80-token ones, took 110 s on 2
    cores; split this way, the long one took 17 s and the other nine together 17 s."""
    start = 0
    while start < len(order):
        end = start + 1
        while (end < len(order) and end - start < batch_size
               and size[order[start]] - size[order[end]] <= max(size[order[end]], slack)):
            end += 1
        yield start, order[start:end]
        start = end
