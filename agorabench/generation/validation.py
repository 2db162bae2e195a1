"""Checks an accepted instance must pass (docs/paper.md §1.8), each failure named by a reason code.

Like the paper's validators these look at the response (and the length of the whole instance); they
are kept as the paper has them, including their known bias against any response that mentions
"Input:" or "Output:", because the benchmark measures generators under the paper's rules.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

CODE_BANNED = ("example usage", "this function", "test the function", "test cases",
               "this implementation", "explanation", "this solution")


def forbidden_strings(method: str, domain: str) -> list[str]:
    """Placeholder and trigger text that must never leak into a response."""
    triggers = ["revised question:", "revised answer:"] if method == "quality_enhancement" else ["input:", "output:"]
    words = ["<input@>", "<output@>", "<input>", "<output>", "[end]", "<input_theme>", *triggers]
    if method == "instance_generation" and domain == "general":
        words.append("<first_word>")
    return words


@lru_cache(maxsize=4)
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def count_tokens(text: str, tokenizer: str) -> int:
    if tokenizer == "approx":
        return math.ceil(len(text) / 4)
    return len(_tokenizer(tokenizer).encode(text))


def validate(method: str, domain: str, instruction: str, response: str, *,
             max_tokens: int = 4096, tokenizer: str = "approx", strict_format: bool = True) -> tuple[str, str] | None:
    """None when valid, else (reason, detail). `strict_format=False` (the JSON ablation) skips the
    domain format rules its prompts never ask for."""
    n = count_tokens(instruction + "\n" + response, tokenizer)
    if n > max_tokens:
        return "too_long", f"{n} tokens > {max_tokens}"
    low = response.lower()
    for word in forbidden_strings(method, domain):
        if word in low:
            return "placeholder_leak", f"response contains {word!r}"
    if not strict_format:
        return None
    if domain == "math":
        opens, closes = response.count("[RESULT]"), response.count("[/RESULT]")
        if opens != 1 or closes != 1:
            return "math_result_tags", f"{opens} [RESULT] and {closes} [/RESULT] (need exactly one each)"
        if not response.rstrip().endswith("[/RESULT]"):
            return "math_result_tags", "response does not end with [/RESULT]"
    if domain == "code":
        fences = response.count("```")
        if fences == 0 or fences % 2:
            return "code_fences", f"{fences} code fences (need an even, non-zero number)"
        stripped = response.strip()
        if not (stripped.startswith("```") and stripped.endswith("```")):
            return "code_fences", "response must start and end with a code fence"
        outside = " ".join(re.split(r"```.*?```", stripped, flags=re.S)).lower()
        for phrase in CODE_BANNED:
            if phrase in outside:
                return "code_banned_phrase", f"{phrase!r} outside the code block"
    return None
