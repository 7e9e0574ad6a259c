#!/usr/bin/env python3
"""Checks a running `plugbox serve` gateway with the official `openai` SDK (and curl).

    python test_gateway.py SCENARIO...

tests/all/gateway_sdk.rs starts the processes and runs this script; each
scenario expects the gateway set up as that test sets it up. Environment:

* `GATEWAY_URL`: the gateway's base URL, `http://127.0.0.1:PORT/v1`;
* `GATEWAY_KEY`: a client API key the gateway accepts;
* `MOCK_URL`: the mock upstream (tests/gateway/mock_upstream.py), `http://127.0.0.1:PORT`;
* `PLUGIN_DIR`: the gateway's plugin directory (the `reload` scenario rewrites it);
* `TOOL_TAG`: the tag of the tool-hook plugin (the `tools-*` scenarios).

A failed check raises with what was expected and what came; the script exits
non-zero naming the scenario.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import uuid

import openai

GATEWAY_URL = os.environ.get("GATEWAY_URL", "")
GATEWAY_KEY = os.environ.get("GATEWAY_KEY", "")
MOCK_URL = os.environ.get("MOCK_URL", "")


def client(key=None, **kw):
    # No SDK retries: what is retried is the gateway's business.
    return openai.OpenAI(base_url=GATEWAY_URL, api_key=key or GATEWAY_KEY, max_retries=0, timeout=60, **kw)


def check(cond, what, got=None):
    if not cond:
        raise AssertionError(what if got is None else f"{what}; got: {got!r}")


def mock_log():
    with urllib.request.urlopen(MOCK_URL + "/_mock/log", timeout=10) as r:
        return json.load(r)


def upstream_calls(model):
    return [e for e in mock_log() if "path" in e and e["model"] == model]


def mock_events(model):
    return [e for e in mock_log() if "event" in e and e["model"] == model]


def user(text):
    return [{"role": "user", "content": text}]


def unique(prefix):
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


def assemble(stream):
    """Content, tool calls (joined from their fragments), finish reason, usage and chunk count of a stream."""
    content, calls, finish, usage, n = "", {}, None, None, 0
    for ch in stream:
        n += 1
        if ch.usage is not None:
            usage = ch.usage
        for choice in ch.choices:
            d = choice.delta
            if d.content:
                content += d.content
            for tc in d.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return content, [calls[i] for i in sorted(calls)], finish, usage, n


# --- scenario: basic (system-prompt, pii-redact, logging; one upstream) -----------------------


def basic():
    c = client()

    # A completion: plugins edit the request (system prompt in, e-mail masked),
    # the response comes back with every field the upstream sent, and a field
    # no plugin knows reaches the upstream unchanged.
    r = c.chat.completions.create(
        model="json",
        messages=user("mail bob.smith@example.org please"),
        extra_body={"x_vendor_field": {"keep": [1, 2, "three"]}},
        temperature=0.25,
    )
    check(r.choices[0].message.content == "mock reply to: mail [EMAIL] please", "reply", r.choices[0].message.content)
    check(r.id == "chatcmpl-mock" and r.system_fingerprint == "fp_mock", "response fields kept", r)
    check(r.usage.total_tokens == 12, "usage kept", r.usage)
    sent = upstream_calls("json")[-1]
    msgs = sent["body"]["messages"]
    check(msgs[0] == {"role": "system", "content": "Answer briefly."}, "system-prompt inserted upstream", msgs)
    check(msgs[-1]["content"] == "mail [EMAIL] please", "pii-redact masked the prompt upstream", msgs)
    check(sent["body"].get("x_vendor_field") == {"keep": [1, 2, "three"]}, "unknown field passed on", sent["body"])
    check(sent["body"].get("temperature") == 0.25, "temperature passed on", sent["body"])
    check(sent["headers"].get("authorization") == "Bearer upstream-secret", "upstream key from env", sent["headers"])

    # An alias route renames the model.
    r = c.chat.completions.create(model="gpt-mock", messages=user("alias"))
    check(r.choices[0].message.content == "mock reply to: alias", "alias reply", r)
    check(upstream_calls("json")[-1]["body"]["messages"][-1]["content"] == "alias", "alias reached upstream model `json`")

    # A stream: chunks assembled, an e-mail split over two chunks is held and
    # masked by pii-redact's on-chunk hook, usage at the end with include_usage.
    s = c.chat.completions.create(
        model="stream-say:0:hello_|write_to_bob@exa|mple.org_now",
        messages=user("stream please"),
        stream=True,
        stream_options={"include_usage": True},
    )
    content, calls, finish, usage, n = assemble(s)
    check(content == "hello write to [EMAIL] now", "streamed text masked", content)
    check(not calls and finish == "stop", "stream finish", (calls, finish))
    check(usage is not None and usage.total_tokens == 8, "usage chunk with include_usage", usage)
    check(n >= 3, "a real stream of several chunks", n)

    # A slower stream keeps every chunk, in order.
    s = c.chat.completions.create(
        model="stream:6:20", messages=user("count"), stream=True, stream_options={"include_usage": True}
    )
    content, _, finish, usage, _ = assemble(s)
    check(content == "c0 c1 c2 c3 c4 c5 ", "stream content", content)
    check(finish == "stop" and usage.completion_tokens == 6, "stream end", (finish, usage))
    check(upstream_calls("stream:6:20")[-1]["body"].get("stream") is True, "upstream asked to stream")

    # Embeddings.
    e = c.embeddings.create(model="embed-small", input=["a", "bb", "ccc"])
    check([d.embedding[0] for d in e.data] == [1.0, 2.0, 3.0], "one embedding per input, in order", e.data)
    check(upstream_calls("embed-small")[-1]["path"].endswith("/embeddings"), "embeddings reached the upstream")

    # Models from the routes (the `*` route is not listed).
    ids = [m.id for m in c.models.list().data]
    check("gpt-mock" in ids and "*" not in ids, "models from the routes", ids)

    # A wrong key, and no key.
    for key in ("wrong-key", "-"):
        try:
            client(key).chat.completions.create(model="json", messages=user("x"))
            raise AssertionError(f"key {key!r} was accepted")
        except openai.AuthenticationError as err:
            check(err.status_code == 401, "401", err.status_code)
            # The SDK keeps the `error` object of an OpenAI error body.
            check(isinstance(err.body, dict) and err.body.get("message"), "OpenAI error body", err.body)

    curl_sse_framing()


def curl_sse_framing():
    curl = shutil.which("curl")
    check(curl is not None, "curl is not installed: install it (Debian/Ubuntu: apt-get install curl)")
    body = json.dumps({"model": "stream:3:0", "messages": user("frame"), "stream": True})
    out = subprocess.run(
        [curl, "-sS", "-N", "-D", "-", "--fail-with-body", GATEWAY_URL + "/chat/completions",
         "-H", "content-type: application/json", "-H", f"authorization: Bearer {GATEWAY_KEY}", "--data", body],
        capture_output=True, timeout=60,
    )
    check(out.returncode == 0, "curl succeeded", out.stderr.decode() + out.stdout.decode())
    raw = out.stdout.decode()
    head, _, events = raw.partition("\r\n\r\n")
    check("content-type: text/event-stream" in head.lower(), "SSE content type", head)
    check(events.endswith("data: [DONE]\n\n"), "ends with `data: [DONE]` and a blank line", events[-80:])
    frames = events.split("\n\n")
    check(frames[-1] == "", "every event ends with a blank line", frames[-3:])
    frames = [f for f in frames[:-1] if not f.startswith(":")]  # comments (keep-alives) allowed
    check(all(f.startswith("data: ") and "\n" not in f for f in frames), "one `data:` line per event", frames)
    text = "".join(
        (json.loads(f[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or "" for f in frames[:-1]
    )
    check(text == "c0 c1 c2 ", "curl stream content", text)


# --- scenarios: tool-call hooks (a plugin that allows, denies or answers every call) --------


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def tool_models():
    """A model name for plain tool calls and one for streamed ones, unique to this run."""
    key = uuid.uuid4().hex[:12]
    return f"tools:{key}", f"tools-stream:{key}"


def tool_call_plain_and_streamed(plain, streamed):
    c = client()
    r = c.chat.completions.create(model=plain, messages=user("weather in Paris?"), tools=TOOLS)
    s = c.chat.completions.create(model=streamed, messages=user("weather in Paris?"), tools=TOOLS, stream=True)
    return r, assemble(s)


def tools_allow():
    plain, streamed = tool_models()
    r, (content, calls, finish, _, _) = tool_call_plain_and_streamed(plain, streamed)
    tc = r.choices[0].message.tool_calls
    check(tc and tc[0].function.name == "get_weather", "allowed tool call returned", r)
    check(json.loads(tc[0].function.arguments) == {"city": "Paris"}, "arguments kept", tc[0].function.arguments)
    check(r.choices[0].finish_reason == "tool_calls", "finish reason", r.choices[0].finish_reason)
    check(len(calls) == 1 and calls[0]["name"] == "get_weather", "streamed tool call", calls)
    check(json.loads(calls[0]["arguments"]) == {"city": "Paris"}, "streamed fragments join", calls)
    check(calls[0]["id"] == "call_weather_1" and finish == "tool_calls", "streamed call id and finish", (calls, finish))
    check(len(upstream_calls(plain)) == 1 and len(upstream_calls(streamed)) == 1, "one upstream call each")


def tools_deny():
    # A denied call is removed: the client sees a note saying who denied it
    # and why, the finish reason becomes `stop`, and the model is not called again.
    tag = os.environ["TOOL_TAG"]
    plain, streamed = tool_models()
    r, (content, calls, finish, _, _) = tool_call_plain_and_streamed(plain, streamed)
    msg = r.choices[0].message
    for what, text, left, end in (("plain", msg.content, msg.tool_calls, r.choices[0].finish_reason),
                                  ("streamed", content, calls, finish)):
        check(not left, f"{what}: a denied tool call never reaches the client", left)
        check(text and "[tool call get_weather denied by" in text and f"denied by {tag}" in text,
              f"{what}: the client learns who denied the call and why", text)
        check(end == "stop", f"{what}: finish reason stop once no call is left", end)
    check(len(upstream_calls(plain)) == 1 and len(upstream_calls(streamed)) == 1, "the model is not called again")


def tools_answer():
    tag = os.environ["TOOL_TAG"]
    plain, streamed = tool_models()
    r, (content, calls, finish, _, _) = tool_call_plain_and_streamed(plain, streamed)
    expected = 'tool said: {"answered_by":"%s"}' % tag
    check(r.choices[0].message.content == expected, "the gateway ran the answered call", r.choices[0].message)
    check(not r.choices[0].message.tool_calls, "no tool call left for the client", r.choices[0].message)
    check(content == expected and not calls and finish == "stop", "streamed: answered", (content, calls, finish))
    for m in (plain, streamed):
        sent = upstream_calls(m)
        check(len(sent) == 2, "the model called again with the tool result", len(sent))
        msgs = sent[1]["body"]["messages"]
        check(msgs[-2]["role"] == "assistant" and msgs[-2]["tool_calls"][0]["id"] == "call_weather_1",
              "the assistant's tool call precedes the result", msgs)
        check(msgs[-1]["role"] == "tool" and msgs[-1]["tool_call_id"] == "call_weather_1", "tool result", msgs)
        check(json.loads(msgs[-1]["content"]) == {"answered_by": tag}, "the plugin's result", msgs[-1])


# --- scenario: rate-limit (burst 2, refilling very slowly) -----------------------------------


def rate_limit():
    c = client()
    for _ in range(2):
        c.chat.completions.create(model="json", messages=user("within the burst"))
    try:
        c.chat.completions.create(model="json", messages=user("over the limit"))
        raise AssertionError("the third request was not rate limited")
    except openai.RateLimitError as err:
        check(err.status_code == 429, "429", err.status_code)
        retry_after = err.response.headers.get("retry-after")
        check(retry_after is not None and int(retry_after) >= 1, "Retry-After", retry_after)
    check(len(upstream_calls("json")) == 2, "the refused request never reached the upstream")


# --- scenario: upstream (retries, fallback, slow streams, disconnects) -----------------------


def upstream():
    c = client()

    model = unique("fail503:2")
    r = c.chat.completions.create(model=model, messages=user("retry me"))
    check(r.choices[0].message.content == "mock reply to: retry me", "answered after two 503s", r)
    check([e["status"] for e in upstream_calls(model)] == [503, 503, 200], "three tries", upstream_calls(model))

    model = unique("fail429once")
    r = c.chat.completions.create(model=model, messages=user("wait for me"))
    calls = upstream_calls(model)
    check([e["status"] for e in calls] == [429, 200], "retried after 429", calls)
    check(calls[1]["time"] - calls[0]["time"] >= 0.95, "Retry-After: 1 honoured", calls[1]["time"] - calls[0]["time"])

    model = unique("fail500")
    try:
        c.chat.completions.create(model=model, messages=user("doomed"))
        raise AssertionError("an upstream that always fails gave an answer")
    except openai.APIStatusError as err:
        check(err.status_code == 502, "502 when the upstream keeps failing", err.status_code)
    check(len(upstream_calls(model)) == 3, "the first try and two retries", len(upstream_calls(model)))

    # First provider down (nothing listens on its port): the second answers.
    r = c.chat.completions.create(model="fallback", messages=user("anyone there?"))
    check(r.choices[0].message.content == "mock reply to: anyone there?", "fallback answer", r)
    s = c.chat.completions.create(model="fallback", messages=user("stream?"), stream=True)
    content, _, _, _, _ = assemble(s)
    check(content == "mock reply to: stream?", "fallback stream", content)

    # An upstream that breaks mid-stream: the client gets the chunks sent so
    # far, then an SSE error event (the SDK raises), and the stream closes.
    model = unique("broken:3")
    s = c.chat.completions.create(model=model, messages=user("break"), stream=True)
    seen = ""
    try:
        for ch in s:
            if ch.choices and ch.choices[0].delta.content:
                seen += ch.choices[0].delta.content
        raise AssertionError(f"a broken upstream stream ended cleanly after {seen!r}")
    except openai.APIError as err:
        check(seen == "part part part ", "the chunks before the break", seen)
        check(isinstance(err.body, dict) and err.body.get("message"), "an OpenAI error event", (err, err.body))

    # A slow stream is relayed as it arrives: the upstream holds its second
    # chunk until we have seen the first one through the gateway.
    model = unique("gated")
    key = model.split(":")[1]
    s = c.chat.completions.create(model=model, messages=user("slow"), stream=True)
    seen = ""
    for ch in s:
        if ch.choices and ch.choices[0].delta.content:
            seen += ch.choices[0].delta.content
            if seen == "first ":
                urllib.request.urlopen(urllib.request.Request(f"{MOCK_URL}/_mock/release/{key}", data=b"{}"), timeout=10)
    check(seen == "first second", "gated stream content", seen)
    events = [e["event"] for e in mock_events(model)]
    check("released" in events, "the first chunk reached the client before the second was sent", events)

    # A client that goes away mid-stream: the gateway drops the upstream call.
    model = unique("ticks:400:25")
    s = c.chat.completions.create(model=model, messages=user("long"), stream=True)
    got = 0
    for ch in s:
        if ch.choices and ch.choices[0].delta.content:
            got += 1
            if got == 3:
                break
    s.close()
    deadline = time.time() + 8
    while time.time() < deadline and not mock_events(model):
        time.sleep(0.05)
    events = mock_events(model)
    check(events and events[0]["event"] == "disconnect", "the upstream saw the disconnect", events)
    check(events[0]["chunks_sent"] < 200, "well before the stream's end", events[0])


# --- scenario: reload (50 plugin reloads under load) ------------------------------------------


def write_manifest(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def reload():
    c = client()
    manifest_path = os.path.join(os.environ["PLUGIN_DIR"], "pii-redact", "plugin.yaml")
    with open(manifest_path) as f:
        template = f.read()
    check("[CARD-v0]" in template, "the test's manifest sets card_mask [CARD-v0]", template)

    def mask_now():
        r = c.chat.completions.create(model="say:card_4111111111111111", messages=user("probe"))
        return r.choices[0].message.content

    check(mask_now() == "card [CARD-v0]", "version 0 answers", mask_now())

    stop = threading.Event()
    stats = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def load():
        lc = client()
        while not stop.is_set():
            try:
                r = lc.chat.completions.create(model="say:card_4111111111111111", messages=user("load"))
                text = r.choices[0].message.content
                if not text.startswith("card [CARD-v"):
                    raise AssertionError(f"unexpected answer {text!r}")
                with lock:
                    stats["ok"] += 1
            except Exception as e:  # every failure counts
                with lock:
                    stats["failed"].append(repr(e))

    # A stream that starts on version 0 and runs across several reloads.
    stream_result = {}

    def long_stream():
        try:
            s = client().chat.completions.create(model="card-stream:30:100", messages=user("s"), stream=True)
            stream_result["content"] = assemble(s)[0]
        except Exception as e:
            stream_result["error"] = repr(e)
        stream_result["ended"] = time.time()

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    streamer = threading.Thread(target=long_stream)
    streamer.start()
    while not [e for e in mock_log() if e.get("model") == "card-stream:30:100"]:
        time.sleep(0.01)

    reloaded_at = []
    for version in range(1, 51):
        write_manifest(manifest_path, template.replace("[CARD-v0]", f"[CARD-v{version}]"))
        want = f"card [CARD-v{version}]"
        deadline = time.time() + 15
        while (got := mask_now()) != want:
            check(time.time() < deadline, f"reload {version} took effect", got)
            time.sleep(0.01)
        reloaded_at.append(time.time())

    stop.set()
    for w in workers:
        w.join()
    streamer.join()
    check("error" not in stream_result, "the long stream finished", stream_result.get("error"))
    check(stream_result["ended"] > reloaded_at[0], "the stream was in flight across a reload", stream_result)
    masks = stream_result["content"].count("[CARD-v0]")
    check(masks == 30, "every chunk of the stream masked by the version it started with",
          stream_result["content"][:300])
    check(not stats["failed"], f"0 failed requests across 50 reloads ({len(stats['failed'])} failed)",
          stats["failed"][:5])
    check(stats["ok"] >= 50, "the load generator ran", stats["ok"])
    print(f"reload: 50 reloads, {stats['ok']} requests under load, 0 failed; "
          f"stream ended {stream_result['ended'] - reloaded_at[0]:.2f}s after the first reload")


# --- scenario: echo (`plugbox serve` with no config and no plugins) -------------------------


def echo():
    c = client("no-key-needed")
    r = c.chat.completions.create(model="any-model", messages=user("hello big world"))
    check(r.choices[0].message.content == "hello big world", "the echo provider answers", r)
    s = c.chat.completions.create(
        model="any-model", messages=user("hello big world"), stream=True, stream_options={"include_usage": True}
    )
    content, _, finish, usage, n = assemble(s)
    check(content == "hello big world" and finish == "stop", "echo stream", (content, finish))
    check(usage is not None and usage.completion_tokens == 3 and n >= 4, "one chunk per word, then usage", (usage, n))


SCENARIOS = {
    "echo": echo,
    "basic": basic,
    "tools-allow": tools_allow,
    "tools-deny": tools_deny,
    "tools-answer": tools_answer,
    "rate-limit": rate_limit,
    "upstream": upstream,
    "reload": reload,
}


def main(argv):
    names = argv[1:]
    unknown = [n for n in names if n not in SCENARIOS]
    if not names or unknown:
        print(f"usage: test_gateway.py SCENARIO... (one of {', '.join(SCENARIOS)}); unknown: {unknown}", file=sys.stderr)
        return 2
    for name in names:
        try:
            SCENARIOS[name]()
        except Exception:
            print(f"FAILED scenario `{name}`:", file=sys.stderr)
            traceback.print_exc()
            return 1
        print(f"ok {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
