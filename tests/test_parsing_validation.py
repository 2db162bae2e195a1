import pytest

from agorabench.generation.parsing import is_complete, parse_output
from agorabench.generation.validation import validate


def test_instance_generation_takes_text_between_last_triggers():
    out = "Find x if 2x = 4.\\n\nOUTPUT: 2x = 4 so x = 2.\n[RESULT] 2 [/RESULT]\n[END] trailing"
    p = parse_output("instance_generation", out)
    assert p.reason is None
    assert p.instruction == "Find x if 2x = 4."
    assert p.response == "2x = 4 so x = 2.\n[RESULT] 2 [/RESULT]"


def test_instance_generation_without_output_trigger_is_rejected():
    assert parse_output("instance_generation", "just a question").reason == "missing_trigger"


def test_quality_enhancement_uses_revised_triggers():
    out = "What is 2+2?\nRevised Answer: It is 4. [END]"
    p = parse_output("quality_enhancement", out)
    assert (p.instruction, p.response) == ("What is 2+2?", "It is 4.")
    assert parse_output("quality_enhancement", "What is 2+2? OUTPUT: 4").reason == "missing_trigger"


def test_response_generation_keeps_seed_instruction_even_with_triggers_inside():
    seed = "Explain INPUT: and OUTPUT: fields of a form."
    p = parse_output("response_generation", "They label fields. [END]", seed_instruction=seed)
    assert p.instruction == seed and p.response == "They label fields."


def test_json_format_tolerates_fences_and_rejects_garbage():
    ok = parse_output("instance_generation", '```json\n{"instruction": "Q", "response": "A"}\n```', fmt="json")
    assert (ok.instruction, ok.response) == ("Q", "A")
    assert parse_output("instance_generation", "{not json", fmt="json").reason == "json_invalid"
    assert parse_output("instance_generation", '{"instruction": 3, "response": "A"}', fmt="json").reason == "json_invalid"


def test_completeness():
    assert is_complete("x", "stop") and is_complete("x [END]", None)
    assert not is_complete("cut off", "length")


@pytest.mark.parametrize("method,domain,instruction,response,reason", [
    ("response_generation", "math", "Q", "x = 2", "math_result_tags"),
    ("response_generation", "math", "Q", "[RESULT] 2 [/RESULT] then more", "math_result_tags"),
    ("response_generation", "math", "Q", "[RESULT] 1 [/RESULT] [RESULT] 2 [/RESULT]", "math_result_tags"),
    ("response_generation", "code", "Q", "def f(): pass", "code_fences"),
    ("response_generation", "code", "Q", "Here:\n```python\nx=1\n```", "code_fences"),
    ("response_generation", "code", "Q", "```python\nx=1\n```\nThis function sets x.\n```\n```", "code_banned_phrase"),
    ("instance_generation", "general", "Q", "Fill in <first_word> here", "placeholder_leak"),
    ("instance_generation", "general", "Q", "The Output: is 3", "placeholder_leak"),
    ("quality_enhancement", "general", "Q", "Revised Answer: 3", "placeholder_leak"),
    ("instance_generation", "general", "Q", "word " * 5000, "too_long"),
])
def test_validators_reject_with_named_reason(method, domain, instruction, response, reason):
    verdict = validate(method, domain, instruction, response)
    assert verdict is not None and verdict[0] == reason


@pytest.mark.parametrize("method,domain,response", [
    ("response_generation", "math", "2 + 2 = 4.\n[RESULT] 4 [/RESULT]"),
    ("instance_generation", "code", "```python\ndef add(a, b):\n    return a + b\n```"),
    ("instance_generation", "general", "A clear answer with Output: omitted."),
])
def test_well_formed_instances_pass_canary(method, domain, response):
    if "Output:" in response:  # the paper's rule: any 'output:' in a response is a leak
        assert validate(method, domain, "Q", response)[0] == "placeholder_leak"
        response = response.replace("Output:", "it")
    assert validate(method, domain, "Q", response) is None


def test_json_ablation_skips_domain_format_rules():
    assert validate("instance_generation", "math", "Q", "x is 2", strict_format=False) is None
    assert validate("instance_generation", "math", "Q", "x is 2", strict_format=True)[0] == "math_result_tags"
