"""Turn a generator's raw text into (instruction, response), or a reason it could not be.

Same splitting rules as the paper (docs/paper.md §1.7): the last input trigger, the output trigger, and the
[END] stop phrase. Two deliberate differences: response generation takes the instruction from our
seed record instead of re-parsing it out of the filled prompt (which broke on seeds containing
"INPUT:"), and the JSON parser tolerates a ```json fence around the object.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from agorabench.generation.prompting import (INPUT_TRIGGER, OUTPUT_TRIGGER, QE_INPUT_TRIGGER, QE_OUTPUT_TRIGGER,
                                  STOP_PHRASE)

COMPLETE_FINISH_REASONS = {"stop", "stop_sequence", "end_turn", "eos"}


@dataclass(frozen=True)
class Parsed:
    instruction: str = ""
    response: str = ""
    reason: str | None = None   # None when parsing succeeded
    detail: str = ""


def reject(reason: str, detail: str = "") -> Parsed:
    return Parsed(reason=reason, detail=detail)


def is_complete(text: str, finish_reason: str | None) -> bool:
    """Did the model finish on its own? A cut at max_tokens is an incomplete instance."""
    if finish_reason in COMPLETE_FINISH_REASONS:
        return True
    return STOP_PHRASE in text


def _clean(text: str) -> str:
    """Strip whitespace, and the two-character sequence backslash-n that models copy literally from
    prompts that say to write "\\nOUTPUT: "."""
    text = text.strip()
    while text.startswith("\\n") or text.endswith("\\n"):
        text = (text[2:] if text.startswith("\\n") else text[:-2]).strip()
    return text


def _before_stop(text: str) -> str:
    return _clean(text.split(STOP_PHRASE)[0])


def parse_triggered(text: str, input_trigger: str, output_trigger: str) -> Parsed:
    if output_trigger not in text:
        return reject("missing_trigger", f"no {output_trigger!r} in the output")
    head, _, tail = text.rpartition(output_trigger)
    instruction = _clean(head.split(input_trigger)[-1])
    response = _before_stop(tail)
    if not instruction:
        return reject("empty_instruction")
    if not response:
        return reject("empty_response")
    return Parsed(instruction, response)


def parse_json(text: str) -> Parsed:
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, re.S)
    if fence:
        body = fence.group(1).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return reject("json_invalid", "no JSON object in the output")
    try:
        obj = json.loads(body[start:end + 1])
    except json.JSONDecodeError as e:
        return reject("json_invalid", str(e))
    if not isinstance(obj, dict) or not isinstance(obj.get("instruction"), str) or not isinstance(obj.get("response"), str):
        return reject("json_invalid", "expected string fields 'instruction' and 'response'")
    if not obj["instruction"].strip():
        return reject("empty_instruction")
    if not obj["response"].strip():
        return reject("empty_response")
    return Parsed(obj["instruction"].strip(), obj["response"].strip())


def parse_output(method: str, text: str, *, fmt: str = "text", seed_instruction: str = "") -> Parsed:
    if method == "instance_generation":
        if fmt == "json":
            return parse_json(_before_stop(text) if STOP_PHRASE in text else text)
        return parse_triggered(text, INPUT_TRIGGER, OUTPUT_TRIGGER)
    if method == "quality_enhancement":
        return parse_triggered(text, QE_INPUT_TRIGGER, QE_OUTPUT_TRIGGER)
    response = _before_stop(text)
    if not response:
        return reject("empty_response")
    return Parsed(seed_instruction, response)
