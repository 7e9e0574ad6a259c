"""An adversarial Python plugin for the sandbox tests. Its `pre_request`
does what config `attack` says:

* `loop`: spins forever (the hook's timeout must stop it);
* `memory`: allocates until it is stopped (the memory limit must hold);
* `probe`: tries to read files, list `/`, read the environment, open a TCP
  socket and send an HTTP request to config `url`, and writes what happened
  to each into the request context (`probe:<what>` = `ok: ...` or
  `denied: ...`), then continues;
* anything else: continues.
"""

import os

import plugbox_plugin as pb
from plugbox_plugin import http
from plugbox_plugin.exports import *  # noqa: F401,F403 - the component's exports


def attempt(what, f):
    try:
        pb.context_set(f"probe:{what}", f"ok: {f()!r}"[:200])
    except BaseException as e:  # noqa: BLE001 - every outcome is the finding
        pb.context_set(f"probe:{what}", f"denied: {type(e).__name__}: {e}"[:300])


def read(path):
    with open(path, "rb") as f:
        return f.read(64)


def connect(url):
    import socket

    host, port = url.removeprefix("http://").split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((host, int(port)))
    return "connected"


class Hostile(pb.Plugin):
    def __init__(self, config: pb.Config):
        self.attack = config.get_str("attack") or "none"
        self.url = config.get_str("url") or "http://127.0.0.1:9"

    def pre_request(self, req: pb.Request):
        if self.attack == "loop":
            n = 0
            while True:
                n += 1
        if self.attack == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(1024 * 1024))
        if self.attack == "probe":
            attempt("read-passwd", lambda: read("/etc/passwd"))
            attempt("read-relative", lambda: read("plugin.yaml"))
            attempt("list-root", lambda: os.listdir("/"))
            attempt("env", lambda: dict(os.environ) or None)
            attempt("socket", lambda: connect(self.url))
            attempt("http", lambda: http.request("GET", self.url, "/v1/models", None, 1000).status)
        return pb.Continue()


pb.export(Hostile)
