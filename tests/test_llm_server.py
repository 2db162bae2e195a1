"""
Tests for the fake LLM server, driven by the real openai and anthropic SDKs over real HTTP, so that
what we check is what our clients will see: the SDKs' own parsing, error mapping and retry logic.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest

from agorabench.testing.llm_server import FakeLLMServer, default_responder

REPO_ROOT = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "Say something useful."}]

@pytest.fixture
def server():
    with FakeLLMServer() as s:
        yield s

def openai_client(server, **kw):
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", **kw)

def anthropic_client(server, **kw):
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=server.url, api_key="x", **kw)

@pytest.fixture
def oai(server):
    client = openai_client(server)
    yield client
    client.close()

@pytest.fixture
def ant(server):
    client = anthropic_client(server)
    yield client
    client.close()

def chat(client, messages=USER, **kw):
    return client.chat.completions.create(model="fake-model", messages=messages, **kw)

def message(client, messages=USER, max_tokens=256, **kw):
    return client.messages.create(model="fake-model", messages=messages, max_tokens=max_tokens, **kw)

# -----------------------------------------------------------------------------
# normal completions

def test_openai_completion(server, oai):
    r = chat(oai)
    text = r.choices[0].message.content
    assert r.model == "fake-model" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert text.endswith("\n[END]")  # no stop sent, so the raw responder output comes back whole
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 3  # "Say something useful." is three words
    assert r.usage.completion_tokens == len(text.split())
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert server.request_count == 1 and server.completed_count == 1

@pytest.mark.parametrize("stop", [["[END]"], "[END]", ["nope", "[END]"]])
def test_openai_stop(oai, stop):
    r = chat(oai, stop=stop)
    assert "[END]" not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"

def test_openai_max_tokens(oai):
    for kw in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        r = chat(oai, **kw)
        assert len(r.choices[0].message.content.split()) == 3
        assert r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens == 3

def test_anthropic_completion(server, ant):
    m = message(ant, system="You are terse.")
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.content[0].type == "text" and m.content[0].text.endswith("\n[END]")
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens == 3 + 3  # the system prompt counts too
    assert m.usage.output_tokens == len(m.content[0].text.split())
    assert server.completed_count == 1

def test_anthropic_stop_sequences_and_max_tokens(ant):
    m = message(ant, stop_sequences=["[END]"])
    assert "[END]" not in m.content[0].text
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "[END]"
    m = message(ant, max_tokens=2)
    assert len(m.content[0].text.split()) == 2
    assert m.stop_reason == "max_tokens" and m.stop_sequence is None

def test_models_endpoint(oai, ant):
    assert [m.id for m in oai.models.list()] == ["fake-model"]
    assert [m.id for m in ant.models.list()] == ["fake-model"]

def test_custom_responder_dict():
    def responder(api, body):
        return {"text": "one two three", "finish_reason": "length", "input_tokens": 7, "output_tokens": 99}
    with FakeLLMServer(responder=responder) as s, openai_client(s) as oai, anthropic_client(s) as ant:
        r = chat(oai)
        assert r.choices[0].message.content == "one two three" and r.choices[0].finish_reason == "length"
        assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 99, 106)
        m = message(ant)
        assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 99

def test_broken_responder_is_a_500():
    def responder(api, body):
        raise RuntimeError("boom")
    with FakeLLMServer(responder=responder) as s, openai_client(s) as oai:
        with pytest.raises(openai.InternalServerError, match="boom"):
            chat(oai)

def test_invalid_request_is_a_400(server, oai):
    with pytest.raises(openai.BadRequestError, match="messages"):
        chat(oai, messages=[])
    assert server.request_count == 1 and server.completed_count == 0

# -----------------------------------------------------------------------------
# faults

STATUS_FAULTS = [
    # fault, openai exception, anthropic exception
    ("429", openai.RateLimitError, anthropic.RateLimitError),
    ("500", openai.InternalServerError, anthropic.InternalServerError),
    ("503", openai.InternalServerError, anthropic.ServiceUnavailableError),
    ("529", openai.InternalServerError, anthropic.OverloadedError),
    ("400", openai.BadRequestError, anthropic.BadRequestError),
]

@pytest.mark.parametrize("fault,openai_exc,anthropic_exc", STATUS_FAULTS)
def test_status_faults(server, oai, ant, fault, openai_exc, anthropic_exc):
    server.inject(fault, fault)
    with pytest.raises(openai_exc) as e:
        chat(oai)
    assert e.value.status_code == int(fault)
    with pytest.raises(anthropic_exc) as e:
        message(ant)
    assert e.value.status_code == int(fault)
    assert server.request_count == 2 and server.completed_count == 0
    chat(oai)  # faults are used up: the next request succeeds
    assert server.completed_count == 1

def test_400_carries_the_server_message(server, oai, ant):
    server.inject(("400", {"message": "prompt is too long: 9999 tokens"}), "400")
    with pytest.raises(openai.BadRequestError, match="prompt is too long: 9999 tokens") as e:
        chat(oai)
    assert e.value.body["type"] == "invalid_request_error"  # OpenAI's error format
    with pytest.raises(anthropic.BadRequestError, match="injected bad request") as e:
        message(ant)
    assert e.value.body["error"]["type"] == "invalid_request_error"  # Anthropic's error format

def test_429_retry_after_header(server, oai):
    server.inject("429", ("429", {"retry_after": "1"}))
    with pytest.raises(openai.RateLimitError) as e:
        chat(oai)
    assert e.value.response.headers["retry-after"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        chat(oai)
    assert e.value.response.headers["retry-after"] == "1"

def test_sdk_retries_through_faults_honouring_retry_after(server):
    # Retry-After "0" is ignored by both SDKs (they need > 0) and they back off ~0.4-0.5 s instead;
    # a small positive value is honoured, which keeps this test fast
    fast = {"retry_after": "0.01"}
    with openai_client(server, max_retries=2) as oai, anthropic_client(server, max_retries=2) as ant:
        server.inject(("429", fast), ("503", fast))
        t0 = time.perf_counter()
        assert chat(oai).choices[0].message.content
        server.inject(("529", fast), ("429", fast))
        assert message(ant).content[0].text
        assert time.perf_counter() - t0 < 0.8  # ignoring Retry-After would take over 2 s
    assert server.request_count == 6 and server.completed_count == 2

@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_timeout_fault(server, api):
    server.inject(("timeout", {"hang_s": 5}))
    t0 = time.perf_counter()
    if api == "openai":
        with openai_client(server, timeout=0.3) as c, pytest.raises(openai.APITimeoutError):
            chat(c)
    else:
        with anthropic_client(server, timeout=0.3) as c, pytest.raises(anthropic.APITimeoutError):
            message(c)
    assert time.perf_counter() - t0 < 2
    assert server.request_count == 1 and server.completed_count == 0

def test_drop_fault(server, oai, ant):
    server.inject("drop", "drop")
    with pytest.raises(openai.APIConnectionError) as e:
        chat(oai)
    assert not isinstance(e.value, openai.APITimeoutError)  # a disconnect, not a timeout
    with pytest.raises(anthropic.APIConnectionError) as e:
        message(ant)
    assert not isinstance(e.value, anthropic.APITimeoutError)
    assert server.request_count == 2 and server.completed_count == 0

def test_garbage_fault(server, oai, ant):
    # both SDKs let the raw json.JSONDecodeError (a ValueError) escape rather than an APIError
    server.inject("garbage", "garbage")
    with pytest.raises((ValueError, openai.APIError)):
        chat(oai)
    with pytest.raises((ValueError, anthropic.APIError)):
        message(ant)
    assert server.request_count == 2 and server.completed_count == 0

def test_unknown_fault_is_rejected(server):
    with pytest.raises(ValueError):
        server.inject("418")

# -----------------------------------------------------------------------------
# counters

def test_counters(server, oai):
    server.inject("500", "drop")
    for i in range(3):
        try:
            chat(oai, messages=[{"role": "user", "content": f"request {i}"}])
        except (openai.InternalServerError, openai.APIConnectionError):
            pass
    assert server.request_count == 3 and server.completed_count == 1
    assert [b["messages"][0]["content"] for b in server.received] == ["request 0", "request 1", "request 2"]
    assert [b["messages"][0]["content"] for b in server.completed] == ["request 2"]
    oai.models.list()  # not a completion request: not counted
    assert server.request_count == 3
    server.reset_counts()
    assert (server.request_count, server.completed_count, server.received, server.completed) == (0, 0, [], [])

def test_concurrent_requests_overlap():
    # 64 requests at 50 ms each take 3.2 s one after another; overlapping, about one latency
    async def run(url):
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        msgs = [[{"role": "user", "content": f"prompt {i}"}] for i in range(64)]
        t0 = time.perf_counter()
        out = await asyncio.gather(*(client.chat.completions.create(model="m", messages=m) for m in msgs))
        elapsed = time.perf_counter() - t0
        await client.close()
        return out, elapsed
    with FakeLLMServer(latency_s=0.05) as s:
        out, elapsed = asyncio.run(run(s.url))
        assert s.completed_count == 64
    assert len({r.choices[0].message.content for r in out}) > 1  # different prompts, different answers
    assert elapsed < 1.6  # half the serial time, with room for a loaded CI machine

# -----------------------------------------------------------------------------
# default responder

PROMPT_BY_DOMAIN = {
    "math": "Q: What is 1 + 1?\nA: 1 plus 1 is 2.\n[RESULT] 2 [/RESULT]\n",
    "code": "Q: print one\nA:\n```python\nprint(1)\n```\n",
    "general": "Q: Why is the sky blue?\nA: Because of Rayleigh scattering.\n",
}
TAILS = {"quality": "Revised Question:", "instance": "INPUT:  \n", "json": "New Example:", "response": "Response:"}

def check_answer(domain, answer):
    if domain == "math":
        assert re.search(r"\n\[RESULT\] \d+ \[/RESULT\]$", answer)
    elif domain == "code":
        assert re.fullmatch(r"```python\ndef f_[0-9a-f]{8}\(x\):\n    return x \+ \d+\n```", answer)
    else:
        assert "[RESULT]" not in answer and "```" not in answer and answer.endswith(".")

@pytest.mark.parametrize("domain", list(PROMPT_BY_DOMAIN))
@pytest.mark.parametrize("method", list(TAILS))
def test_default_responder_formats(domain, method):
    body = {"messages": [{"role": "user", "content": PROMPT_BY_DOMAIN[domain] + TAILS[method]}]}
    text = default_responder("openai", body)
    if method == "json":
        obj = json.loads(text)
        assert set(obj) == {"instruction", "response"} and obj["instruction"]
        check_answer(domain, obj["response"])
        return
    assert text.endswith("\n[END]")
    text = text[: -len("\n[END]")]
    if method == "quality":
        question, answer = text.split("\nRevised Answer: ", 1)
        assert question and "\n" not in question
    elif method == "instance":
        instruction, answer = text.split("\nOUTPUT: ", 1)
        assert instruction and "\n" not in instruction
    else:
        answer = text
        assert "Revised Answer:" not in text and "OUTPUT:" not in text
    check_answer(domain, answer)

def test_default_responder_is_deterministic_and_varied():
    def body(prompt):
        return {"messages": [{"role": "user", "content": prompt}]}
    assert default_responder("openai", body("a INPUT:")) == default_responder("openai", body("a INPUT:"))
    outputs = {default_responder("openai", body(f"prompt {i} [RESULT] INPUT:")) for i in range(20)}
    assert len(outputs) > 10

def test_default_responder_anthropic_content_blocks():
    body = {"system": "You write data.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "```x```"},
                                                      {"type": "text", "text": "INPUT:"}]}]}
    text = default_responder("anthropic", body)
    assert "\nOUTPUT: ```python\ndef f_" in text and text.endswith("[END]")

def test_canary_server_honours_stop(oai):
    # if the server ignored `stop`, "[END]" would leak into every completion our pipeline parses
    prompt = [{"role": "user", "content": PROMPT_BY_DOMAIN["math"] + "INPUT:"}]
    assert "[END]" in chat(oai, messages=prompt).choices[0].message.content  # the responder does emit it
    r = chat(oai, messages=prompt, stop=["[END]"])
    assert "[END]" not in r.choices[0].message.content
    assert "\nOUTPUT: " in r.choices[0].message.content

# -----------------------------------------------------------------------------
# CLI

def test_cli():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "agorabench.testing.llm_server", "--port", "0", "--latency", "0.01"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0  # SIGTERM is a clean shutdown
