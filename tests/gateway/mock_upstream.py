#!/usr/bin/env python3
"""A mock OpenAI-compatible upstream for the gateway tests (Python stdlib only).

    python3 mock_upstream.py [--port PORT]

Listens on 127.0.0.1 (port 0 by default: any free port) and prints
`mock-upstream: listening on http://127.0.0.1:PORT` on stdout once it accepts.

What it answers is chosen by the model name it receives, `KIND[:ARG...]`:

* `json` (and any unknown kind): a completion whose text is
  `mock reply to: <last user message>`;
* `say:TEXT`: a completion whose text is TEXT (`_` stands for a space);
* `stream:N:MS`: an SSE stream of N chunks `c0 `, `c1 `, ... MS milliseconds
  apart (then a usage chunk when `stream_options.include_usage` is set);
* `ticks:N:MS`: like `stream`, every chunk `tick ` (no digits, which
  pii-redact may hold back while a number could be being written);
* `broken:N`: a stream that sends N chunks `part ` and then drops the
  connection mid-stream (no `[DONE]`, no end of the chunked body);
* `stream-say:MS:PART|PART|...`: an SSE stream of the given parts (`_` is a
  space), MS milliseconds apart;
* `gated:KEY`: a stream that sends `first `, then waits until
  `POST /_mock/release/KEY` (at most 20 s), then sends `second`; the log
  says whether the release came (`released`) or the wait ran out;
* `fail429once:KEY`: 429 with `Retry-After: 1` the first time KEY is seen,
  then a completion;
* `fail503:N:KEY`: 503 the first N times KEY is seen, then a completion;
* `fail500`: always 500 with an OpenAI error body;
* `tools`: when the last message is a tool result, the text
  `tool said: <its content>`; otherwise a `get_weather` tool call;
* `tools-stream`: the same, streamed, the tool call in fragments (name
  first, arguments in three pieces);
* `card-stream:N:MS`: N chunks `card 4111111111111111 ok. `, MS apart
  (held and masked by pii-redact).

Streams use chunked transfer encoding with `data: <json>\\n\\n` events and a
final `data: [DONE]\\n\\n`. A stream whose client goes away is noticed before
each chunk (the socket reads end-of-file, or a write fails).

`POST /v1/embeddings` answers a 4-dimensional vector per input.

Control endpoints for the tests:

* `GET /_mock/log`: every request received (`path`, `model`, `body`,
  `headers`, `status`, `time`) and every stream event (`event`:
  `stream-complete`, `disconnect` with `chunks_sent`, `released` or
  `release-timeout`), in order, as a JSON list;
* `POST /_mock/release/KEY`: lets a `gated:KEY` stream go on.
"""

import argparse
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
LOG = []
SEEN = {}
RELEASES = {}


def record(entry):
    with LOCK:
        entry["seq"] = len(LOG)
        entry["time"] = time.time()
        LOG.append(entry)


def count_seen(key):
    with LOCK:
        SEEN[key] = SEEN.get(key, 0) + 1
        return SEEN[key]


def release_event(key):
    with LOCK:
        if key not in RELEASES:
            RELEASES[key] = threading.Event()
        return RELEASES[key]


def last_message(body):
    messages = body.get("messages") or []
    return messages[-1] if messages else {}


def text_of(message):
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(body):
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return text_of(message)
    return ""


def completion(model, message, finish_reason="stop"):
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "system_fingerprint": "fp_mock",
    }


def text_completion(model, text):
    return completion(model, {"role": "assistant", "content": text})


TOOL_CALL = {
    "id": "call_weather_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def chunk(model, delta, finish_reason=None):
    return {
        "id": "chatcmpl-mock-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


class ClientGone(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream/1"

    def log_message(self, format, *args):  # quiet: the log endpoint tells what happened
        pass

    # --- plumbing -----------------------------------------------------------

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return {"_unparsed": raw.decode("utf-8", "replace")}

    def send_json(self, status, value, extra_headers=()):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, val in extra_headers:
            self.send_header(name, val)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_error_json(self, status, message, kind, extra_headers=()):
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}}, extra_headers)

    def client_gone(self):
        """The client closed its end: the socket is readable with nothing to read."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunked(self, data):
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            raise ClientGone() from e

    def event(self, value):
        if self.client_gone():
            raise ClientGone()
        payload = value if isinstance(value, str) else json.dumps(value)
        self.write_chunked(b"data: " + payload.encode() + b"\n\n")

    def end_stream(self):
        self.write_chunked(b"data: [DONE]\n\n")
        self.write_chunked(b"")

    def stream(self, model, body, parts, delay_s, gate=None, break_after=None):
        """Sends `parts` (text deltas or whole deltas) as a stream."""
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        sent = 0
        self.start_stream()
        try:
            self.event(chunk(model, {"role": "assistant", "content": ""}))
            for i, part in enumerate(parts):
                if i > 0 and delay_s:
                    time.sleep(delay_s)
                if gate is not None and i == 1:
                    key, ev = gate
                    released = ev.wait(20)
                    record({"event": "released" if released else "release-timeout", "model": model, "key": key})
                delta = part if isinstance(part, dict) else {"content": part}
                self.event(chunk(model, delta))
                sent += 1
                if break_after is not None and sent == break_after:
                    record({"event": "broken", "model": model, "chunks_sent": sent})
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
            finish = "tool_calls" if any(isinstance(p, dict) and p.get("tool_calls") for p in parts) else "stop"
            self.event(chunk(model, {}, finish))
            if include_usage:
                usage_chunk = chunk(model, {})
                usage_chunk["choices"] = []
                usage_chunk["usage"] = {"prompt_tokens": 5, "completion_tokens": len(parts), "total_tokens": 5 + len(parts)}
                self.event(usage_chunk)
            self.end_stream()
            record({"event": "stream-complete", "model": model, "chunks_sent": sent, "total": len(parts)})
        except ClientGone:
            record({"event": "disconnect", "model": model, "chunks_sent": sent, "total": len(parts)})
            self.close_connection = True

    # --- routes -------------------------------------------------------------

    def do_GET(self):
        if self.path == "/_mock/log":
            with LOCK:
                snapshot = list(LOG)
            self.send_json(200, snapshot)
        elif self.path in ("/v1/models", "/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "json", "object": "model", "owned_by": "mock"}]})
        else:
            self.send_error_json(404, f"no route GET {self.path}", "invalid_request_error")

    def do_POST(self):
        if self.path.startswith("/_mock/release/"):
            self.read_json()
            release_event(self.path[len("/_mock/release/") :]).set()
            self.send_json(200, {"released": True})
            return
        body = self.read_json()
        model = str(body.get("model", ""))
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"path": self.path, "model": model, "body": body, "headers": headers}
        if self.path.endswith("/embeddings"):
            entry["status"] = 200
            record(entry)
            self.embeddings(model, body)
        elif self.path.endswith("/chat/completions"):
            self.chat(model, body, entry)
        else:
            entry["status"] = 404
            record(entry)
            self.send_error_json(404, f"no route POST {self.path}", "invalid_request_error")

    def embeddings(self, model, body):
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(x))), 0.5, -0.25, float(i)]}
            for i, x in enumerate(inputs or [])
        ]
        self.send_json(200, {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    def chat(self, model, body, entry):
        kind, *args = model.split(":")
        streaming = bool(body.get("stream"))
        status = 200
        if kind == "fail429once" and count_seen(model) == 1:
            status = 429
        elif kind == "fail503" and count_seen(model) <= int(args[0]):
            status = 503
        elif kind == "fail500":
            status = 500
        entry["status"] = status
        record(entry)
        if status == 429:
            self.send_error_json(429, "slow down (mock)", "rate_limit_error", [("Retry-After", "1")])
            return
        if status >= 500:
            self.send_error_json(status, f"mock upstream failure {status}", "server_error")
            return

        if kind == "stream":
            n, ms = int(args[0]), int(args[1])
            self.stream(model, body, [f"c{i} " for i in range(n)], ms / 1000)
        elif kind == "broken":
            n = int(args[0])
            self.stream(model, body, ["part "] * (n + 1), 0, break_after=n)
        elif kind == "ticks":
            n, ms = int(args[0]), int(args[1])
            self.stream(model, body, ["tick "] * n, ms / 1000)
        elif kind == "stream-say":
            ms, parts = int(args[0]), ":".join(args[1:]).split("|")
            self.stream(model, body, [p.replace("_", " ") for p in parts], ms / 1000)
        elif kind == "gated":
            key = args[0]
            self.stream(model, body, ["first ", "second"], 0, gate=(key, release_event(key)))
        elif kind == "card-stream":
            n, ms = int(args[0]), int(args[1])
            self.stream(model, body, ["card 4111111111111111 ok. " for _ in range(n)], ms / 1000)
        elif kind in ("tools", "tools-stream"):
            last = last_message(body)
            if last.get("role") == "tool":
                answer = "tool said: " + text_of(last)
                if streaming:
                    self.stream(model, body, [answer[: len(answer) // 2], answer[len(answer) // 2 :]], 0)
                else:
                    self.send_json(200, text_completion(model, answer))
            elif streaming:
                args_text = TOOL_CALL["function"]["arguments"]
                pieces = [args_text[:4], args_text[4:11], args_text[11:]]
                deltas = [
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": TOOL_CALL["id"],
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                ] + [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
                self.stream(model, body, deltas, 0)
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
                self.send_json(200, completion(model, message, "tool_calls"))
        elif streaming:
            self.stream(model, body, ["mock ", "reply ", "to: ", last_user_text(body)], 0)
        elif kind == "say":
            self.send_json(200, text_completion(model, ":".join(args).replace("_", " ")))
        else:
            self.send_json(200, text_completion(model, "mock reply to: " + last_user_text(body)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"mock-upstream: listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
