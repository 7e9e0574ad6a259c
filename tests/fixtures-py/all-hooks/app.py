"""Every hook kind of the Python SDK, for the tests: a provider of type
`py-echo` (answers with the last user message; streams it word by word; the
message `fail` is refused as rate limited), a tool hook (denies `rm`,
answers `clock`, renames `search` to `web_search` and adds an argument), a
chunk hook (upper-cases text), a stream-end hook (appends ` [end]`) and a
post-response hook (counts calls in its kv store and puts the count in the
response's `system_fingerprint`; answers `recover` itself).
"""

import json

import plugbox_plugin as pb
from plugbox_plugin.exports import *  # noqa: F401,F403 - the component's exports


def completion(text: str, model: str) -> dict:
    return {
        "id": "py-1", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())},
    }


def chunk(model: str, delta: dict, finish=None) -> dict:
    return {"id": "py-1", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class AllHooks(pb.Plugin):
    def provider_type(self) -> str:
        return "py-echo"

    def last_text(self, req: pb.Request) -> str:
        i = req.last_user_index()
        return "" if i is None else (req.text(i) or "")

    def complete(self, req: pb.Request):
        text = self.last_text(req)
        if text == "fail":
            raise pb.LlmError.rate_limited("slow down", 1500)
        return completion(text, req.model())

    def start_stream(self, req: pb.Request):
        # `req` is valid only during this call: read it now, stream later.
        model = req.model()
        words = self.last_text(req).split()

        def chunks():
            yield chunk(model, {"role": "assistant", "content": ""})
            for k, word in enumerate(words):
                yield json.dumps(chunk(model, {"content": word if k == 0 else " " + word}))
            yield chunk(model, {}, "stop")

        return chunks()

    def on_tool_call(self, req: pb.Request, call: pb.ToolCallRef):
        if call.name() == "rm":
            return pb.Deny("no rm")
        if call.name() == "clock":
            return pb.Answer({"time": "noon"})
        if call.name() == "search":
            args = json.loads(call.arguments())
            args["safe"] = True
            call.set_arguments(args)
            call.set_name("web_search")
        return pb.Allow()

    def on_chunk(self, req: pb.Request, chunk: pb.Chunk):
        for i in range(chunk.choice_count()):
            text = chunk.text(i)
            if text:
                chunk.set_text(i, text.upper())
        return None

    def on_stream_end(self, req: pb.Request, end: pb.StreamEnd) -> None:
        end.append_text(" [end]")

    def post_response(self, req: pb.Request, resp: pb.Response):
        n = pb.kv_increment("calls", 1)
        if not resp.is_error() and resp.text(0) == "recover":
            return pb.Respond(completion("recovered by python", resp.model()))
        resp.set_param("system_fingerprint", f"calls={n}")
        return pb.Continue()


pb.export(AllHooks)
