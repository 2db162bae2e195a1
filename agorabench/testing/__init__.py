"""Test support that also serves the benchmarks/ scripts: a loopback server speaking the OpenAI and Anthropic
wire formats (llm_server.py), one speaking the part of the Hugging Face Hub API an upload uses
(hub_server.py), fixture trees of pipeline outputs written with the stages' own records (results_tree.py,
datasets.py).

May import: anything in agorabench (it sits beside the pipeline, not in it).
"""
