"""
A loopback HTTP server that speaks the OpenAI Chat Completions and the Anthropic Messages wire
formats, for tests and benchmarks. Real SDK clients talk to it over real HTTP, so retries, timeouts,
connection pooling and error mapping are exercised exactly as they would be against the real APIs.

    with FakeLLMServer(latency_s=0.05) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
        server.inject("429", "drop")   # the next two completion requests fail, in that order
        ...
        assert server.request_count == 3 and server.completed_count == 1

It is a small hand-written HTTP/1.1 server on asyncio streams rather than uvicorn: fault injection
needs to do things an ASGI app cannot (close the TCP connection without any response), and a
bare server with no framework in between is also the cheapest per request, which matters when
the client benchmark and the server share two cores.

A responder returns the reply text, or a dict with "text" and optionally "finish_reason", token counts and
"logprobs": [(token, logprob, [(alternative, logprob), ...]), ...], which the OpenAI format sends (as
choices[0].logprobs.content) only to a request that asked for logprobs, as the real API does.

CLI: python -m agorabench.testing.llm_server --port 8123 --latency 0.05
"""

import argparse
import asyncio
import collections
import hashlib
import http
import itertools
import json
import re
import signal
import threading
import time
import traceback

# -----------------------------------------------------------------------------
# faults

FAULT_KINDS = ("429", "500", "503", "529", "400", "timeout", "drop", "garbage")
STATUS_FAULTS = {"429": 429, "500": 500, "503": 503, "529": 529, "400": 400}
DEFAULT_HANG_S = 30.0

# error "type" strings as each real API spells them, so clients that branch on them behave
OPENAI_ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
                      429: "rate_limit_exceeded", 500: "server_error", 503: "server_error", 529: "server_error"}
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                         429: "rate_limit_error", 500: "api_error", 503: "api_error", 529: "overloaded_error"}
DEFAULT_ERROR_MESSAGES = {
    400: "FakeLLMServer: injected bad request (non-retryable)",
    429: "FakeLLMServer: injected rate limit",
    500: "FakeLLMServer: injected internal server error",
    503: "FakeLLMServer: injected service unavailable",
    529: "FakeLLMServer: injected overloaded",
}
REASON_PHRASES = {529: "Overloaded"}  # not in http.HTTPStatus

def _normalize_fault(fault):
    """'429' | 429 | ('429', {'retry_after': '1'}) -> ('429', {...}); raise on unknown kinds."""
    if isinstance(fault, (tuple, list)):
        kind, opts = fault
    else:
        kind, opts = fault, {}
    kind = str(kind)
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
    return kind, dict(opts or {})

# -----------------------------------------------------------------------------
# helpers on request bodies, shared by both APIs

def _content_text(content):
    """Message content is either a string or a list of blocks; keep only the text blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "\n".join(parts)

def last_user_text(body):
    """The text of the last user message (the prompt the responder answers)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""

def count_tokens(text):
    # a deterministic stand-in for a tokenizer: whitespace-separated words
    return len(text.split())

def _prompt_tokens(body):
    n = count_tokens(_content_text(body.get("system")))  # Anthropic's top-level system prompt
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            n += count_tokens(_content_text(message.get("content")))
    return n

def _cut_at_stop(text, stops):
    """Cut at the earliest occurrence of any stop string; return (text, the stop that matched or None)."""
    best, best_stop = None, None
    for stop in stops:
        if not stop:
            continue
        i = text.find(stop)
        if i != -1 and (best is None or i < best):
            best, best_stop = i, stop
    if best is None:
        return text, None
    return text[:best], best_stop

_WORD = re.compile(r"\S+")

def _cut_at_tokens(text, max_tokens):
    """Keep the first max_tokens words, with the original whitespace between them (so code stays code)."""
    if max_tokens <= 0:
        return "", count_tokens(text) > 0
    for i, m in enumerate(_WORD.finditer(text)):
        if i + 1 == max_tokens:
            rest = text[m.end():]
            return (text[:m.end()], True) if rest.strip() else (text, False)
    return text, False

# -----------------------------------------------------------------------------
# default responder: deterministic answers in the formats our meta-prompts ask for

_TOPICS = ["photosynthesis", "the water cycle", "compound interest", "plate tectonics", "supply and demand",
           "the immune system", "binary search", "the French Revolution", "ocean tides", "vaccination"]
_FACTS = ["it turns one kind of input into a more useful output",
          "it is driven by a small number of simple rules",
          "its effects build up gradually over time",
          "it balances two forces that pull in opposite directions",
          "it is easiest to understand through a concrete example"]

def _messages_hash(body):
    # variety comes from the whole conversation (and system prompt), so different prompts give different instances
    key = json.dumps([body.get("system"), body.get("messages")], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()

def default_responder(api, body):
    prompt = last_user_text(body)
    h = _messages_hash(body)
    n = int(h[:8], 16)
    a, b = 2 + n % 97, 3 + (n // 97) % 89

    # domain: what the prompt's examples look like
    if "[RESULT]" in prompt:
        question = f"What is {a} + {b}?"
        answer = f"We add {a} and {b}, which gives {a + b}.\n[RESULT] {a + b} [/RESULT]"
    elif "```" in prompt:
        k = n % 1000
        question = f"Write a Python function f_{h[:8]}(x) that returns x plus {k}."
        answer = f"```python\ndef f_{h[:8]}(x):\n    return x + {k}\n```"
    else:
        topic = _TOPICS[n % len(_TOPICS)]
        fact = _FACTS[(n // len(_TOPICS)) % len(_FACTS)]
        question = f"Explain {topic} in two sentences."
        answer = f"The key point about {topic} is that {fact}. Seen this way, {topic} (case {h[:6]}) is easy to follow."

    # method: what the meta-prompt ends with
    tail = prompt.rstrip()
    if tail.endswith("Revised Question:"):  # quality enhancement
        return f"{question}\nRevised Answer: {answer}\n[END]"
    if tail.endswith("INPUT:"):  # instance generation
        return f"{question}\nOUTPUT: {answer}\n[END]"
    if tail.endswith("New Example:"):  # instance generation, JSON flavour
        return json.dumps({"instruction": question, "response": answer})
    return f"{answer}\n[END]"  # response generation

# -----------------------------------------------------------------------------
# the wire formats

class BadRequest(Exception):
    """Raised by the server's checks, or by a responder, for a request the real API would refuse: the
    client gets a 400 with this message (not a 500, which clients retry)."""

_ids = itertools.count(1)

def _finalize(api, body, reply):
    """Apply stop strings and max_tokens to the responder's reply; return (text, reason, stop, in_tok, out_tok).
    reason is in OpenAI's vocabulary ("stop" | "length"), mapped to Anthropic's by the caller."""
    if isinstance(reply, str):
        reply = {"text": reply}
    elif not isinstance(reply, dict):
        raise TypeError(f"responder must return str or dict, got {type(reply).__name__}")
    text = str(reply.get("text", ""))

    if api == "openai":
        stops = body.get("stop")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    else:
        stops = body.get("stop_sequences")
        max_tokens = body.get("max_tokens")
    if stops is None:
        stops = []
    elif isinstance(stops, str):
        stops = [stops]

    text, matched = _cut_at_stop(text, stops)
    truncated = False
    if max_tokens is not None:
        text, truncated = _cut_at_tokens(text, int(max_tokens))
    if truncated:
        reason, matched = "length", None  # the length limit was hit before the stop string
    elif matched is not None:
        reason = "stop"
    else:
        reason = reply.get("finish_reason") or "stop"  # a responder may simulate e.g. truncation

    in_tok = reply.get("input_tokens")
    out_tok = reply.get("output_tokens")
    in_tok = _prompt_tokens(body) if in_tok is None else int(in_tok)
    out_tok = count_tokens(text) if out_tok is None else int(out_tok)
    return text, reason, matched, in_tok, out_tok

def _validate(api, body):
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("'messages' must be a non-empty list")
    if api == "anthropic" and not isinstance(body.get("max_tokens"), int):
        raise BadRequest("max_tokens: Field required")  # the real API requires it too
    if body.get("stream"):
        raise BadRequest("FakeLLMServer does not support stream=true")

def _openai_logprobs(body, reply):
    if not body.get("logprobs") or not isinstance(reply, dict) or reply.get("logprobs") is None:
        return None
    k = int(body.get("top_logprobs") or 0)
    entry = lambda t, lp: {"token": t, "logprob": lp, "bytes": list(t.encode())}  # noqa: E731
    return {"content": [{**entry(t, lp), "top_logprobs": [entry(a, b) for a, b in alts[:k]]}
                        for t, lp, alts in reply["logprobs"]], "refusal": None}


def openai_completion(body, responder):
    reply = responder("openai", body)
    logprobs = _openai_logprobs(body, reply)
    text, reason, _, in_tok, out_tok = _finalize("openai", body, reply)
    if reason not in ("stop", "length", "content_filter", "tool_calls"):
        reason = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}.get(reason, "stop")
    n = int(body.get("n") or 1)  # n samples: the same text each time, which is enough for a fake
    return {
        "id": f"chatcmpl-fake{next(_ids):010d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or "fake-model",
        "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": logprobs, "finish_reason": reason} for i in range(n)],
        "usage": {"prompt_tokens": in_tok, "completion_tokens": out_tok * n, "total_tokens": in_tok + out_tok * n},
        "system_fingerprint": "fake",
    }

def anthropic_message(body, responder):
    text, reason, matched, in_tok, out_tok = _finalize("anthropic", body, responder("anthropic", body))
    if matched is not None:
        stop_reason = "stop_sequence"
    else:
        stop_reason = {"stop": "end_turn", "length": "max_tokens"}.get(reason, reason)
    return {
        "id": f"msg_fake{next(_ids):010d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model") or "fake-model",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": matched,
        "usage": {"input_tokens": in_tok, "output_tokens": out_tok},
    }

def error_body(api, status, message):
    if api == "anthropic":
        return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message, "type": OPENAI_ERROR_TYPES.get(status, "server_error"),
                      "param": None, "code": None}}

def models_body(api):
    if api == "anthropic":
        return {"data": [{"type": "model", "id": "fake-model", "display_name": "Fake Model",
                          "created_at": "2024-01-01T00:00:00Z"}],
                "has_more": False, "first_id": "fake-model", "last_id": "fake-model"}
    return {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "agorabench"}]}

# -----------------------------------------------------------------------------
# the server

class _Drop(Exception):
    """Raised inside a request handler to close the connection without writing anything."""

class FakeLLMServer:

    def __init__(self, *, latency_s: float = 0.0, responder=None, host="127.0.0.1", port: int = 0,
                 blocking_responder: bool = False):
        self.latency_s = latency_s
        self.responder = responder or default_responder
        # A responder that blocks (one that asks a model) runs in a worker thread, so that requests in
        # flight overlap; a quick one runs on the event loop, the cheapest per request.
        self.blocking_responder = blocking_responder
        self.host = host
        self.port = port
        self.url = None
        self._lock = threading.Lock()  # guards faults and counters: tests touch them from another thread
        self._faults = collections.deque()
        self.reset_counts()
        self._loop = None
        self._thread = None
        self._server = None
        self._conn_tasks = set()

    # --- counters and faults (called from any thread)

    def reset_counts(self):
        with self._lock:
            self.request_count = 0    # completion requests received (faulty ones included)
            self.completed_count = 0  # completion requests answered 200 with a valid body
            self.received = []        # bodies of all completion requests, in order
            self.received_auth = []   # their Authorization (OpenAI) or x-api-key (Anthropic) headers
            self.completed = []       # bodies of the requests answered successfully

    def inject(self, *faults):
        """Queue faults for the next completion requests, one per request, in order."""
        normalized = [_normalize_fault(f) for f in faults]
        with self._lock:
            self._faults.extend(normalized)
        return self

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self):
        with self._lock:
            return [kind for kind, _ in self._faults]

    # --- lifecycle

    def start(self):
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer already started")
        started = threading.Event()
        failure = []

        def run():
            # the server gets its own event loop in its own thread, so it works under sync and async tests alike
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle_connection, self.host, self.port, limit=1 << 20, backlog=1024))
            except BaseException as e:  # e.g. port in use: report it to start() instead of dying silently
                failure.append(e)
                started.set()
                loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            self.url = f"http://{self.host}:{self.port}"
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close_everything())
                loop.close()

        self._thread = threading.Thread(target=run, name="FakeLLMServer", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self  # the listening socket is open, so connections are accepted from here on

    def stop(self):
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def _close_everything(self):
        self._server.close()
        # cancel open connections too, including requests held open by a "timeout" fault
        for task in list(self._conn_tasks):
            task.cancel()
        await asyncio.gather(*self._conn_tasks, return_exceptions=True)
        await self._server.wait_closed()

    # --- HTTP/1.1, just enough of it for httpx: keep-alive, Content-Length and chunked bodies

    async def _handle_connection(self, reader, writer):
        task = asyncio.current_task()
        self._conn_tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return  # client went away (or sent garbage); nothing to answer
                try:
                    lines = head[:-4].decode("latin-1").split("\r\n")
                    method, target, version = lines[0].split(" ", 2)
                    headers = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    if headers.get("expect", "").lower() == "100-continue":
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    if "chunked" in headers.get("transfer-encoding", "").lower():
                        body = await self._read_chunked(reader)
                    else:
                        body = await reader.readexactly(int(headers.get("content-length", "0")))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except ValueError:
                    await self._write(writer, 400, {"content-type": "text/plain"}, b"malformed request", False)
                    return
                conn = headers.get("connection", "").lower()
                keep_alive = (conn != "close") if version == "HTTP/1.1" else (conn == "keep-alive")

                try:
                    status, extra_headers, payload = await self._dispatch(method, target, headers, body)
                except _Drop:
                    return  # the finally below closes the socket: the client sees a disconnect, no response
                await self._write(writer, status, extra_headers, payload, keep_alive)
                if not keep_alive:
                    return
        except asyncio.CancelledError:
            pass  # server shutting down
        except ConnectionError:
            pass  # the client hung up first (e.g. its own timeout fired while we slept)
        except Exception:
            traceback.print_exc()  # a bug here must not take down the server, but should not go unseen either
        finally:
            self._conn_tasks.discard(task)
            writer.close()

    async def _read_chunked(self, reader):
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                # skip trailers up to the empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)  # CRLF after each chunk

    async def _write(self, writer, status, headers, payload, keep_alive):
        reason = REASON_PHRASES.get(status) or http.HTTPStatus(status).phrase
        head = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(payload)}",
                "connection: " + ("keep-alive" if keep_alive else "close")]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()

    # --- routing and the completion endpoints

    async def _dispatch(self, method, target, headers, raw):
        path = target.split("?", 1)[0].rstrip("/")
        json_headers = {"content-type": "application/json"}
        if path == "/health" and method == "GET":  # as `vllm serve` and `transformers serve` answer
            return 200, json_headers, b"{}"
        if path == "/v1/models" and method == "GET":
            # both SDKs use this path; the Anthropic one always sends anthropic-version
            api = "anthropic" if "anthropic-version" in headers else "openai"
            return 200, json_headers, json.dumps(models_body(api)).encode()
        if path == "/v1/chat/completions":
            api = "openai"
        elif path == "/v1/messages":
            api = "anthropic"
        else:
            api = "anthropic" if "anthropic-version" in headers else "openai"
            return 404, json_headers, json.dumps(error_body(api, 404, f"no route for {method} {path}")).encode()
        if method != "POST":
            return 405, json_headers, json.dumps(error_body(api, 405, f"{method} not allowed on {path}")).encode()

        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_invalid_json": raw.decode("utf-8", "replace")}
        with self._lock:
            self.request_count += 1
            self.received.append(body)
            self.received_auth.append(headers.get("authorization") or headers.get("x-api-key"))
            fault = self._faults.popleft() if self._faults else None

        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)  # asyncio.sleep, so that concurrent requests overlap

        if fault is not None:
            return await self._apply_fault(api, *fault)

        try:
            if "_invalid_json" in body:
                raise BadRequest("request body is not valid JSON")
            _validate(api, body)
            complete = openai_completion if api == "openai" else anthropic_message
            if self.blocking_responder:
                answer = await asyncio.to_thread(complete, body, self.responder)
            else:
                answer = complete(body, self.responder)
        except BadRequest as e:
            return 400, json_headers, json.dumps(error_body(api, 400, str(e))).encode()
        except Exception as e:  # a broken responder should show up as a clear 500, not a hung client
            return 500, json_headers, json.dumps(error_body(api, 500, f"responder failed: {e!r}")).encode()
        payload = json.dumps(answer).encode()
        # count before writing: the client may look at the counters as soon as it has the response
        with self._lock:
            self.completed_count += 1
            self.completed.append(body)
        extra = {"content-type": "application/json",
                 ("request-id" if api == "anthropic" else "x-request-id"): "req_" + answer["id"]}
        return 200, extra, payload

    async def _apply_fault(self, api, kind, opts):
        json_headers = {"content-type": "application/json"}
        if kind in STATUS_FAULTS:
            status = STATUS_FAULTS[kind]
            headers = dict(json_headers)
            retry_after = opts.get("retry_after", "0" if kind == "429" else None)
            if retry_after is not None:
                headers["retry-after"] = str(retry_after)
            message = opts.get("message", DEFAULT_ERROR_MESSAGES[status])
            return status, headers, json.dumps(error_body(api, status, message)).encode()
        if kind == "timeout":
            await asyncio.sleep(float(opts.get("hang_s", DEFAULT_HANG_S)))  # hold the request open...
            raise _Drop()  # ...and then hang up without ever answering
        if kind == "drop":
            raise _Drop()
        if kind == "garbage":
            # what a misbehaving proxy might send: a 200 that claims to be JSON but is not
            payload = opts.get("body", "<html>502 Bad Gateway: this is not JSON {{{")
            return 200, json_headers, payload.encode() if isinstance(payload, str) else payload
        raise AssertionError(kind)

# -----------------------------------------------------------------------------
# CLI

def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic server for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each completion request waits")
    args = parser.parse_args(argv)

    server = FakeLLMServer(latency_s=args.latency, host=args.host, port=args.port).start()
    print(server.url, flush=True)  # one line, so a parent process can read the URL
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())  # shut down cleanly on kill as on Ctrl-C
    try:
        while not done.wait(1.0):  # wait with a timeout so Ctrl-C is delivered promptly
            pass
    except KeyboardInterrupt:
        pass
    server.stop()

if __name__ == "__main__":
    main()
