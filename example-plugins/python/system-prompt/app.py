"""Inserts a system message into every request, unless an identical system
message is already there: the Python port of the Rust `system-prompt`
example, with the same behaviour (the language benchmark runs all three).

Config: `prompt` (string, required): the system message; `position`
(`first` by default): `first` puts it before every other message,
`after-system` after the request's own leading system messages, `last` at
the end of the conversation.
"""

import plugbox_plugin as pb
from plugbox_plugin.exports import *  # noqa: F401,F403 - the component's exports

POSITIONS = ("first", "after-system", "last")


class SystemPrompt(pb.Plugin):
    def __init__(self, config: pb.Config):
        self.prompt = config.require_str("prompt")
        if not self.prompt.strip():
            raise pb.PluginError("config `prompt` must not be empty")
        position = config.get_str("position")
        self.position = "first" if position is None else position
        if self.position not in POSITIONS:
            raise pb.PluginError(
                f"config `position` must be `first`, `after-system` or `last`, got `{self.position}`")

    def pre_request(self, req: pb.Request):
        # Roles are free to read; only system messages' text is read.
        leading_system = 0
        counting = True
        count = req.message_count()
        for i in range(count):
            if req.role(i) != pb.Role.SYSTEM:
                counting = False
                continue
            if counting:
                leading_system += 1
            if req.text(i) == self.prompt:
                return pb.Continue()
        at = {"first": 0, "after-system": leading_system, "last": count}[self.position]
        req.insert_message(at, pb.Role.SYSTEM, self.prompt)
        return pb.Continue()


pb.export(SystemPrompt)
