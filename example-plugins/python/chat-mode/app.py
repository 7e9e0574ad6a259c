"""Interface plugin for **chat** models: the Python port of the Rust
`chat-mode` example, with the same behaviour.

* `mode`: `chat`; endpoints `v1/chat/completions` and `v1/completions`.
* `validate_request`: accepts those two paths and refuses any other with a
  reason that names the model, its mode and what it does serve.
* `health_check`: `GET {base_url}/v1/models` through `wasi:http`
  (`plugbox_plugin.http`); a 2xx answer is healthy. The host allows the
  request only to hosts granted in `permissions.network`. While a server is
  starting, `elapsed` and `timeout` say how long it has had and may take:
  past the timeout the verdict is final.

Config: `check_timeout_ms` (default 2000): how long one check may wait.
"""

import json

import plugbox_plugin as pb
from plugbox_plugin import http
from plugbox_plugin.exports import *  # noqa: F401,F403 - the component's exports

ENDPOINTS = ["v1/chat/completions", "v1/completions"]


def normalize(path: str) -> str:
    """`/v1/chat/completions/?x=1` -> `v1/chat/completions`."""
    for sep in "?#":
        path = path.split(sep, 1)[0]
    return path.strip("/")


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f}"


def not_ready(model: str, why: str, elapsed_ms: int, timeout_ms: int) -> pb.Health:
    """The verdict when the server is not (yet) healthy: final past the timeout."""
    if elapsed_ms >= timeout_ms:
        return pb.unhealthy(f"model `{model}` did not become healthy within {timeout_ms // 1000}s: {why}")
    return pb.unhealthy(f"model `{model}` not ready after {_seconds(elapsed_ms)}s of {timeout_ms // 1000}s: {why}")


class ChatMode(pb.Plugin):
    def __init__(self, config: pb.Config):
        ms = config.get_int("check_timeout_ms")
        ms = 2000 if ms is None else ms
        if ms <= 0:
            raise pb.PluginError(f"config `check_timeout_ms` must be positive, got `{ms}`")
        self.check_timeout_ms = ms

    def mode(self) -> str:
        return "chat"

    def supported_endpoints(self):
        return list(ENDPOINTS)

    def validate_request(self, path: str, model_alias: str) -> None:
        path = normalize(path)
        if path not in ENDPOINTS:
            raise pb.PluginError(
                f"model `{model_alias}` is a chat model: it serves {' and '.join(ENDPOINTS)}, not `{path}`")

    def health_check(self, model_alias: str, base_url: str, elapsed_ms: int, timeout_ms: int) -> pb.Health:
        try:
            reply = http.request("GET", base_url, "/v1/models", None, self.check_timeout_ms)
        except pb.PluginError as e:
            pb.log(pb.LogLevel.DEBUG, f"health check of `{model_alias}` failed: {e}")
            return not_ready(model_alias, str(e), elapsed_ms, timeout_ms)
        if 200 <= reply.status < 300:
            try:
                data = json.loads(reply.body).get("data")
                detail = f", lists {len(data)} model(s)" if isinstance(data, list) else ""
            except (ValueError, AttributeError):
                detail = ""
            return pb.healthy(f"model `{model_alias}` is up at {base_url} (HTTP {reply.status}{detail})")
        why = f"{base_url}/v1/models answered HTTP {reply.status}"
        return not_ready(model_alias, why, elapsed_ms, timeout_ms)


pb.export(ChatMode)
