# A stand-in for agora_scripts/run.py of neulab/data-agora, written for our tests: the same
# assignment names and shapes, our own (short) contents. Never run; tests read it with `ast`.
general_themes = [
    "Gardening",
    "Astronomy",
    "Board Games",
]

general_triggers = [
    "Sketch ",
    "Why ",
    "Picture this: "
    "Suppose ",
    "Why ",
    "List ",
]

code_themes = [
    "Writing a Rust Function",
    "Repairing a Go Function",
]

math_themes = [
    "Modular Arithmetic",
    "Geometry",
    "Recurrences",
    "Geometry",
]

themes = {
    "general": general_themes,
    "code": code_themes,
    "math": math_themes
}

placeholder_formats = {
    "demonstration_input_placeholder": "<input@>",
    "demonstration_output_placeholder": "<output@>",
    "test_input_placeholder": "<input>",
    "test_output_placeholder": "<output>",
    "test_input_trigger": "INPUT:",
    "test_output_trigger": "OUTPUT:",
    "stop_phrase": "[END]",
    "input_theme": "<input_theme>",
}


def main(method, domain):
    if method == "quality_enhancement":
        placeholder_formats["test_input_trigger"] = "Revised Question:"
    if domain == "general":
        placeholder_formats["first_word"] = "<first_word>"
    return dict(system_message="You write new training examples that follow the rules and samples you are shown.")
