"""Masks payment card numbers, e-mail addresses and phone numbers in prompts
(`pre_request`), responses (`post_response`) and streams (`on_chunk`): the
Python port of the Rust `pii-redact` example, with the same behaviour.

Prompts: the text of every message; an assistant message with tool calls
also has its arguments masked (it is replaced through its JSON). Responses:
every choice's text. Streams: a chunk whose text ends in what may be the start
of a card or phone number, or of an e-mail address, is held back (`Hold`) and
merged with the next one, so a number split across chunks is still masked;
the manifest's `limits.max-held` bounds how much text waits. The number of
masked items of the request is kept in the context key `pii-redact.count`.

Config: `card_mask`, `email_mask`, `phone_mask` (defaults `[CARD]`, `[EMAIL]`,
`[PHONE]`), `cards` / `emails` / `phones` (what to look for, default true),
`responses` (also mask responses and streams, default true).
"""

import plugbox_plugin as pb
from plugbox_plugin.exports import *  # noqa: F401,F403 - the component's exports

import scan

COUNT_KEY = "pii-redact.count"


def add_to_count(n: int) -> None:
    before = pb.context_get(COUNT_KEY)
    try:
        before_n = int(before) if before is not None else 0
    except ValueError:
        before_n = 0
    pb.context_set(COUNT_KEY, str(before_n + n))


class PiiRedact(pb.Plugin):
    def __init__(self, config: pb.Config):
        def mask(on: str, key: str, default: str):
            if config.get_bool(on) is False:
                return None
            value = config.get_str(key)
            return default if value is None else value

        self.card = mask("cards", "card_mask", "[CARD]")
        self.email = mask("emails", "email_mask", "[EMAIL]")
        self.phone = mask("phones", "phone_mask", "[PHONE]")
        responses = config.get_bool("responses")
        self.responses = True if responses is None else responses

    def mask(self, text: str):
        """(`text` masked or None when there was nothing to mask, items masked)."""
        out, n = scan.redact(text, self.card, self.email, self.phone)
        return (out if n > 0 else None), n

    def mask_tool_calls(self, message: dict) -> int:
        n = 0
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            args = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(args, str):
                masked, k = self.mask(args)
                if masked is not None:
                    function["arguments"] = masked
                n += k
        return n

    def pre_request(self, req: pb.Request):
        n = 0
        for i in range(req.message_count()):
            text = req.text(i)
            if text is not None:
                masked, k = self.mask(text)
                if masked is not None:
                    req.set_text(i, masked)
                n += k
            # Only assistant messages carry tool calls; only those are read whole.
            if req.role(i) == pb.Role.ASSISTANT:
                message = req.message(i)
                k = self.mask_tool_calls(message)
                if k > 0:
                    req.remove_message(i)
                    req.insert_message_json(i, message)
                n += k
        add_to_count(n)
        if n > 0:
            pb.log(pb.LogLevel.INFO, f"masked {n} item(s) of personal data in the prompt of `{req.id()}`")
        return pb.Continue()

    def post_response(self, req: pb.Request, resp: pb.Response):
        if not self.responses or resp.is_error():
            return pb.Continue()
        n = 0
        for i in range(resp.choice_count()):
            text = resp.text(i)
            if text is not None:
                masked, k = self.mask(text)
                if masked is not None:
                    resp.set_text(i, masked)
                n += k
        if n > 0:
            add_to_count(n)
            pb.log(pb.LogLevel.INFO, f"masked {n} item(s) of personal data in the response to `{req.id()}`")
        return pb.Continue()

    def on_chunk(self, req: pb.Request, chunk: pb.Chunk):
        if not self.responses:
            return pb.Continue()
        texts = [chunk.text(i) for i in range(chunk.choice_count())]
        # Wait for more when a choice's text may end in the start of an item
        # (unless this is the held text offered one last time).
        if not chunk.last() and any(t is not None and scan.unfinished(t) for t in texts):
            return pb.Hold()
        n = 0
        for i, text in enumerate(texts):
            if text is not None:
                masked, k = self.mask(text)
                if masked is not None:
                    chunk.set_text(i, masked)
                n += k
        add_to_count(n)
        return pb.Continue()


pb.export(PiiRedact)
