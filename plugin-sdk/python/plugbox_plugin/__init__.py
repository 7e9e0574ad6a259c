"""plugbox_plugin: write plugbox plugins in Python.

A plugbox plugin is a WebAssembly component exporting the
``plugbox:plugin@0.2.0`` interfaces (``wit/``). With this package a Python
plugin is one class deriving from :class:`Plugin` (override only the hooks the
manifest lists; every other hook has a harmless default) and one
:func:`export` call, built with componentize-py::

    componentize-py -d <repo>/wit -d <repo>/plugin-sdk/python/wit -w plugbox:python/plugin \\
        --import-interface-name plugbox:plugin/types@0.2.0=types \\
        componentize app -p . -p <repo>/plugin-sdk/python -o plugin.wasm

A complete plugin (``app.py``)::

    import plugbox_plugin as pb
    from plugbox_plugin.exports import *  # the component's exports, routed to the class below

    class Shout(pb.Plugin):
        def __init__(self, config: pb.Config):
            self.suffix = config.get_str("suffix") or "!"

        def pre_request(self, req: pb.Request) -> pb.PreAction:
            i = req.last_user_index()
            if i is not None:
                req.set_text(i, (req.text(i) or "").upper() + self.suffix)
            return pb.Continue()

    pb.export(Shout)

How it maps to the WIT (the same shape as the Rust SDK, ``plugbox-sdk``):

* ``__init__(config)`` is ``lifecycle.init``: it gets the effective config
  as a :class:`Config`; raising refuses the load with the exception's text.
* A hook returns an action (:class:`Continue`, :class:`Respond`,
  :class:`Fail`, :class:`Drop`, :class:`Hold`, :class:`Allow`,
  :class:`Deny`, :class:`Answer`); ``None`` means continue / allow.
  Raising :class:`LlmError` from a request or stream hook is the same as
  returning ``Fail(error)``: a deliberate refusal.
* Any other exception is a plugin failure and the host applies the
  manifest's ``on-error`` policy: :class:`PluginError` (and the
  :class:`Config` getters' errors) become the WIT ``err`` with their message
  alone, anything else with ``"<ExceptionType>: <message>"``. A refused read or edit raises
  :class:`AccessError` (its text names the JSON path and the permission).
* Instances are pooled: the host may create several (each runs
  ``__init__``) and drop any of them; shared state belongs in :mod:`kv`
  functions (:func:`kv_get` ...), per-request state in :func:`context_get`
  and :func:`context_set`.
* A Python instance holds the interpreter: its linear memory starts at
  about 13 MiB (less and ``init`` fails), so give Python plugins
  ``limits.memory: 64MiB`` to leave room for work.
"""

from __future__ import annotations

import json as _json
import traceback as _traceback
from typing import Any, Dict, List, Optional, Tuple

from componentize_py_types import Err as _Err
from wit_world.exports import provider as _provider
from wit_world.exports import request_hooks as _rh
from wit_world.exports import stream_hooks as _sh
from wit_world.exports import tool_hooks as _th
from wit_world.imports import context as _context
from wit_world.imports import devices as _devices
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import types as _types

# The WIT value types, re-exported under their own names.
Role = _types.Role
ErrorKind = _types.ErrorKind
DeviceKind = _types.DeviceKind
Usage = _types.Usage
ToolCall = _types.ToolCall
ToolCallFragment = _types.ToolCallFragment
Health = _types.Health
LogLevel = _types.LogLevel

__all__ = [
    "AccessError", "Allow", "Answer", "Chunk", "Config", "Continue", "Deny", "DeviceKind", "DeviceReport",
    "Drop", "ErrorKind", "Fail", "Health", "Hold", "KvError", "LlmError", "LogLevel", "Plugin", "PluginError",
    "Request", "Respond", "Response", "Role", "StreamEnd", "ToolCall", "ToolCallFragment", "ToolCallRef",
    "Usage", "context_get", "context_remove", "context_set", "devices", "export", "healthy",
    "kv_compare_and_swap", "kv_delete", "kv_get", "kv_increment", "kv_set", "log", "unhealthy",
]


# ---------------------------------------------------------------- errors


class AccessError(Exception):
    """The host refused a read or an edit (the WIT ``access-error``).

    ``kind`` is ``denied``, ``out-of-range``, ``invalid`` or ``too-large``;
    ``detail`` the host's explanation (the JSON path, the permission needed).
    Uncaught, it fails the hook with its text, as the Rust SDK's ``?`` does.
    """

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.kind == "denied":
            return f"access denied: {self.detail}"
        if self.kind == "out-of-range":
            return "index out of range"
        if self.kind == "invalid":
            return f"invalid value: {self.detail}"
        return "the edit exceeds the plugin's output budget (`limits.max-output`)"


def _access_error(value: Any) -> AccessError:
    if isinstance(value, _types.AccessError_Denied):
        return AccessError("denied", value.value)
    if isinstance(value, _types.AccessError_OutOfRange):
        return AccessError("out-of-range")
    if isinstance(value, _types.AccessError_Invalid):
        return AccessError("invalid", value.value)
    return AccessError("too-large")


def _call(method, *args):
    try:
        return method(*args)
    except _Err as e:
        raise _access_error(e.value) from None


class PluginError(Exception):
    """A failure with a message for the operator (a bad config, unreadable
    data): the hook's ``err`` (or the refused load) carries the message alone."""


class LlmError(Exception):
    """An error reported on purpose (the WIT ``llm-error``): a refusal, a
    rate limit, a provider failure. Return ``Fail(error)`` or raise it."""

    def __init__(self, kind: ErrorKind, message: str, allow_fallback: bool = False,
                 retry_after_ms: Optional[int] = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.allow_fallback = allow_fallback
        self.retry_after_ms = retry_after_ms

    @classmethod
    def invalid_request(cls, message: str) -> "LlmError":
        return cls(ErrorKind.INVALID_REQUEST, message)

    @classmethod
    def permission_denied(cls, message: str) -> "LlmError":
        return cls(ErrorKind.PERMISSION_DENIED, message)

    @classmethod
    def content_filtered(cls, message: str) -> "LlmError":
        return cls(ErrorKind.CONTENT_FILTERED, message)

    @classmethod
    def rate_limited(cls, message: str, retry_after_ms: int) -> "LlmError":
        """``rate-limited``, retry after ``retry_after_ms``; no fallback."""
        return cls(ErrorKind.RATE_LIMITED, message, retry_after_ms=retry_after_ms)

    @classmethod
    def provider(cls, message: str) -> "LlmError":
        """A provider failure; another provider may be tried."""
        return cls(ErrorKind.PROVIDER, message, allow_fallback=True)

    @classmethod
    def internal(cls, message: str) -> "LlmError":
        return cls(ErrorKind.INTERNAL, message)

    def _wit(self) -> _types.LlmError:
        return _types.LlmError(self.kind, self.message, self.allow_fallback, self.retry_after_ms)

    @classmethod
    def _from_wit(cls, e: _types.LlmError) -> "LlmError":
        return cls(e.kind, e.message, e.allow_fallback, e.retry_after_ms)


class KvError(Exception):
    """A refused key/value operation: ``denied`` (no ``permissions.kv``),
    ``not-a-number`` or ``other``."""

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        self.detail = detail
        super().__init__(f"kv {kind}" + (f": {detail}" if detail else ""))


# ---------------------------------------------------------------- actions


class Continue:
    """Pass the request, response or chunk on (with the edits made)."""


class Respond:
    """Answer with this response (OpenAI ``chat.completion`` JSON, a ``str``
    or a ``dict``); needs ``messages: write``."""

    def __init__(self, body: Any):
        self.body = body if isinstance(body, str) else _json.dumps(body)


class Fail:
    """Fail the request (or abort the stream) with an :class:`LlmError`."""

    def __init__(self, error: LlmError):
        self.error = error


class Drop:
    """Drop this chunk; the stream goes on (``on_chunk``)."""


class Hold:
    """Keep this chunk back and merge it into the next one (``on_chunk``)."""


class Allow:
    """Let the tool call go ahead, as edited (``on_tool_call``)."""


class Deny:
    """Refuse the tool call; ``reason`` says why (``on_tool_call``)."""

    def __init__(self, reason: str):
        self.reason = reason


class Answer:
    """Do not run the tool; use this result (JSON ``str`` or any value)."""

    def __init__(self, result: Any):
        self.result = result if isinstance(result, str) else _json.dumps(result)


PreAction = Any
PostAction = Any
ChunkAction = Any
ToolAction = Any


def healthy(message: str) -> Health:
    return Health(True, message)


def unhealthy(message: str) -> Health:
    return Health(False, message)


# ---------------------------------------------------------------- config


class Config:
    """The effective configuration: the manifest's defaults merged with the
    operator's values. Typed getters return ``None`` for an absent (or null)
    key and raise :class:`PluginError` for a value of the wrong type."""

    def __init__(self, values: Dict[str, Any]):
        self.values = values

    @classmethod
    def from_json(cls, text: str) -> "Config":
        values = _json.loads(text) if text.strip() else {}
        if not isinstance(values, dict):
            raise PluginError("the config is not a JSON object")
        return cls(values)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def _typed(self, key: str, what: str, ok) -> Any:
        v = self.values.get(key)
        if v is None:
            return None
        if not ok(v):
            raise PluginError(f"config `{key}` must be {what}, got `{_json.dumps(v)}`")
        return v

    def get_str(self, key: str) -> Optional[str]:
        return self._typed(key, "a string", lambda v: isinstance(v, str))

    def get_bool(self, key: str) -> Optional[bool]:
        return self._typed(key, "a boolean", lambda v: isinstance(v, bool))

    def get_int(self, key: str) -> Optional[int]:
        """An integer; a number with no fractional part (``20.0``) is accepted."""
        v = self._typed(key, "an integer", lambda v: not isinstance(v, bool) and (
            isinstance(v, int) or (isinstance(v, float) and v.is_integer())))
        return None if v is None else int(v)

    def get_float(self, key: str) -> Optional[float]:
        v = self._typed(key, "a number", lambda v: not isinstance(v, bool) and isinstance(v, (int, float)))
        return None if v is None else float(v)

    def require_str(self, key: str) -> str:
        v = self.get_str(key)
        if v is None:
            raise PluginError(f"config `{key}` is required")
        return v


# ---------------------------------------------------------------- handles


class Request:
    """The request a hook is called for (a host-owned resource): every read
    crosses into the plugin only what it returns; every edit is checked by
    the host against the manifest's ``messages`` permission."""

    __slots__ = ("_h",)

    def __init__(self, handle):
        self._h = handle

    def id(self) -> str:
        return self._h.id()

    def caller(self) -> Optional[str]:
        return self._h.caller()

    def caller_or(self, default: str) -> str:
        c = self._h.caller()
        return default if c is None else c

    def provider(self) -> str:
        return self._h.provider()

    def streaming(self) -> bool:
        return self._h.streaming()

    def model(self) -> str:
        return self._h.model()

    def set_model(self, model: str) -> None:
        _call(self._h.set_model, model)

    def message_count(self) -> int:
        return self._h.message_count()

    def role(self, index: int) -> Role:
        return _call(self._h.role, index)

    def text(self, index: int) -> Optional[str]:
        return _call(self._h.text, index)

    def set_text(self, index: int, text: str) -> None:
        _call(self._h.set_text, index, text)

    def message_json(self, index: int) -> str:
        return _call(self._h.message_json, index)

    def message(self, index: int) -> Dict[str, Any]:
        """Message ``index`` as a parsed OpenAI JSON object."""
        return _json.loads(self.message_json(index))

    def insert_message(self, index: int, role: Role, text: str) -> None:
        _call(self._h.insert_message, index, role, text)

    def insert_message_json(self, index: int, message: Any) -> None:
        """Insert a message (OpenAI JSON ``str`` or ``dict``) before ``index``."""
        text = message if isinstance(message, str) else _json.dumps(message)
        _call(self._h.insert_message_json, index, text)

    def remove_message(self, index: int) -> None:
        _call(self._h.remove_message, index)

    def last_user_index(self) -> Optional[int]:
        for i in range(self.message_count() - 1, -1, -1):
            if self.role(i) == Role.USER:
                return i
        return None

    def tool_count(self) -> int:
        return self._h.tool_count()

    def tools_json(self) -> str:
        return _call(self._h.tools_json)

    def param(self, name: str) -> Any:
        """Top-level field ``name`` parsed from JSON; ``None`` when absent."""
        v = _call(self._h.param, name)
        return None if v is None else _json.loads(v)

    def set_param(self, name: str, value: Any) -> None:
        """Set a top-level field to ``value`` (any JSON value); ``None`` removes it."""
        _call(self._h.set_param, name, None if value is None else _json.dumps(value))

    def to_json(self) -> str:
        return _call(self._h.to_json)


class Response:
    """The response (or the error) a post-response hook sees."""

    __slots__ = ("_h",)

    def __init__(self, handle):
        self._h = handle

    def error(self) -> Optional[LlmError]:
        e = self._h.error()
        return None if e is None else LlmError._from_wit(e)

    def is_error(self) -> bool:
        return self._h.error() is not None

    def id(self) -> str:
        return self._h.id()

    def model(self) -> str:
        return self._h.model()

    def choice_count(self) -> int:
        return self._h.choice_count()

    def text(self, index: int) -> Optional[str]:
        return _call(self._h.text, index)

    def set_text(self, index: int, text: str) -> None:
        _call(self._h.set_text, index, text)

    def refusal(self, index: int) -> Optional[str]:
        return _call(self._h.refusal, index)

    def finish_reason(self, index: int) -> Optional[str]:
        return _call(self._h.finish_reason, index)

    def tool_calls(self, index: int) -> List[ToolCall]:
        return _call(self._h.tool_calls, index)

    def usage(self) -> Optional[Usage]:
        return self._h.usage()

    def param(self, name: str) -> Any:
        v = _call(self._h.param, name)
        return None if v is None else _json.loads(v)

    def set_param(self, name: str, value: Any) -> None:
        _call(self._h.set_param, name, None if value is None else _json.dumps(value))

    def to_json(self) -> str:
        return _call(self._h.to_json)


class Chunk:
    """One chunk of a streamed response."""

    __slots__ = ("_h",)

    def __init__(self, handle):
        self._h = handle

    def choice_count(self) -> int:
        return self._h.choice_count()

    def text(self, index: int) -> Optional[str]:
        return _call(self._h.text, index)

    def set_text(self, index: int, text: str) -> None:
        _call(self._h.set_text, index, text)

    def reasoning(self, index: int) -> Optional[str]:
        return _call(self._h.reasoning, index)

    def refusal(self, index: int) -> Optional[str]:
        return _call(self._h.refusal, index)

    def role(self, index: int) -> Optional[Role]:
        return _call(self._h.role, index)

    def tool_calls(self, index: int) -> List[ToolCallFragment]:
        return _call(self._h.tool_calls, index)

    def finish_reason(self, index: int) -> Optional[str]:
        return _call(self._h.finish_reason, index)

    def usage(self) -> Optional[Usage]:
        return self._h.usage()

    def to_json(self) -> str:
        return _call(self._h.to_json)

    def last(self) -> bool:
        """True for held text offered once more at the end (``Hold`` is refused then)."""
        return self._h.last()


class StreamEnd:
    """The end of a stream: its usage; chunks may be appended (needs ``write``)."""

    __slots__ = ("_h",)

    def __init__(self, handle):
        self._h = handle

    def usage(self) -> Optional[Usage]:
        return self._h.usage()

    def append_text(self, text: str) -> None:
        _call(self._h.append_text, text)

    def append_json(self, chunk: Any) -> None:
        _call(self._h.append_json, chunk if isinstance(chunk, str) else _json.dumps(chunk))


class ToolCallRef:
    """A tool call the model asked for."""

    __slots__ = ("_h",)

    def __init__(self, handle):
        self._h = handle

    def id(self) -> str:
        return self._h.id()

    def name(self) -> str:
        return self._h.name()

    def arguments(self) -> str:
        return _call(self._h.arguments)

    def set_arguments(self, arguments: Any) -> None:
        _call(self._h.set_arguments, arguments if isinstance(arguments, str) else _json.dumps(arguments))

    def set_name(self, name: str) -> None:
        _call(self._h.set_name, name)


def DeviceReport(id: str, kind: DeviceKind, name: str, source: str, *, online: bool = True,  # noqa: N802
                 memory_total_mb: int = 0, memory_free_mb: int = 0, memory_used_mb: int = 0,
                 utilization: Optional[float] = None, temperature_c: Optional[float] = None,
                 annotations: Optional[List[Tuple[str, str]]] = None) -> _types.DeviceReport:
    """A device report (the WIT record), online, with no memory by default.
    Append ``(key, value)`` pairs to its ``annotations`` list to annotate it."""
    return _types.DeviceReport(id, kind, name, online, memory_total_mb, memory_free_mb, memory_used_mb,
                               utilization, temperature_c, source, list(annotations or []))


# ---------------------------------------------------------------- host imports


def log(level: LogLevel, message: str) -> None:
    """Log through the host's ``tracing``, tagged with the plugin's name."""
    _log.log(level, message)


def context_get(key: str) -> Optional[str]:
    """The current request's context value for ``key`` (shared by its plugins)."""
    return _context.get(key)


def context_set(key: str, value: str) -> None:
    _context.set(key, value)


def context_remove(key: str) -> None:
    _context.remove(key)


def _kv_call(method, *args):
    try:
        return method(*args)
    except _Err as e:
        v = e.value
        if isinstance(v, _kv.KvError_Denied):
            raise KvError("denied", "this plugin was not granted `permissions.kv`") from None
        if isinstance(v, _kv.KvError_NotANumber):
            raise KvError("not-a-number") from None
        raise KvError("other", getattr(v, "value", "")) from None


def kv_get(key: str) -> Optional[bytes]:
    """This plugin's stored value for ``key`` (needs ``permissions.kv``)."""
    return _kv_call(_kv.get, key)


def kv_set(key: str, value: bytes, ttl_ms: Optional[int] = None) -> None:
    _kv_call(_kv.set, key, value, ttl_ms)


def kv_delete(key: str) -> bool:
    return _kv_call(_kv.delete, key)


def kv_increment(key: str, delta: int, ttl_ms: Optional[int] = None) -> int:
    return _kv_call(_kv.increment, key, delta, ttl_ms)


def kv_compare_and_swap(key: str, expected: Optional[bytes], value: bytes, ttl_ms: Optional[int] = None) -> bool:
    return _kv_call(_kv.compare_and_swap, key, expected, value, ttl_ms)


def devices() -> List[_types.DeviceReport]:
    """The host's device reports (after device hooks)."""
    return _devices.list()


# ---------------------------------------------------------------- the plugin


class Plugin:
    """Base class of a plugbox plugin: override ``__init__`` and the hooks
    the manifest lists under ``hooks:``. The defaults pass everything on,
    refuse provider calls and report no devices."""

    def __init__(self, config: Config):
        pass

    def shutdown(self) -> None:
        pass

    # request-hooks
    def pre_request(self, req: Request) -> PreAction:
        return Continue()

    def post_response(self, req: Request, resp: Response) -> PostAction:
        return Continue()

    # stream-hooks
    def on_chunk(self, req: Request, chunk: Chunk) -> ChunkAction:
        return Continue()

    def on_stream_end(self, req: Request, end: StreamEnd) -> None:
        pass

    # tool-hooks
    def on_tool_call(self, req: Request, call: ToolCallRef) -> ToolAction:
        return Allow()

    # provider
    def provider_type(self) -> str:
        return ""

    def complete(self, req: Request) -> Any:
        """A ``chat.completion`` body (``str`` or ``dict``); raise :class:`LlmError` to fail."""
        raise LlmError.internal("this plugin is not a provider (it does not implement `complete`)")

    def start_stream(self, req: Request) -> Any:
        """An iterable of ``chat.completion.chunk`` bodies (``str`` or ``dict``),
        pulled one ``next`` call at a time. ``req`` is valid only during this
        call: read what the stream needs before returning (a generator
        function that reads ``req`` lazily fails)."""
        raise LlmError.internal("this plugin is not a provider (it does not implement `start_stream`)")

    # device-hooks / device-probe
    def on_device_probe(self, reports: List[_types.DeviceReport]) -> List[_types.DeviceReport]:
        return reports

    def probe(self) -> List[_types.DeviceReport]:
        return []

    # endpoint
    def mode(self) -> str:
        return ""

    def supported_endpoints(self) -> List[str]:
        return []

    def validate_request(self, path: str, model_alias: str) -> None:
        """Raise (any exception) with the reason when the request does not fit the mode."""
        raise PluginError(f"this plugin does not validate requests (`{path}`)")

    def health_check(self, model_alias: str, base_url: str, elapsed_ms: int, timeout_ms: int) -> Health:
        return unhealthy("this plugin does not implement health checks")


_PLUGIN_CLASS: Optional[type] = None
_INSTANCE: Optional[Plugin] = None


def export(cls: type) -> type:
    """Register ``cls`` as this component's plugin (call once, at import)."""
    global _PLUGIN_CLASS
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise TypeError("plugbox_plugin.export() takes a subclass of plugbox_plugin.Plugin")
    _PLUGIN_CLASS = cls
    return cls


def _describe(e: BaseException) -> str:
    text = str(e)
    name = type(e).__name__
    if isinstance(e, (AccessError, KvError, PluginError)):
        return text
    return f"{name}: {text}" if text else name


def _failure(e: BaseException) -> _Err:
    """The WIT ``err`` for an exception raised by a hook."""
    return _Err(_describe(e))


def _instance() -> Plugin:
    if _INSTANCE is None:
        raise RuntimeError("the plugin was not initialised (`init` did not succeed)")
    return _INSTANCE


def _pre(action: Any) -> Any:
    if action is None or isinstance(action, Continue):
        return _rh.PreAction_Continue()
    if isinstance(action, Respond):
        return _rh.PreAction_Respond(action.body)
    if isinstance(action, Fail):
        return _rh.PreAction_Fail(action.error._wit())
    raise TypeError(f"pre_request returned {action!r}: expected Continue(), Respond(...) or Fail(...)")


def _post(action: Any) -> Any:
    if action is None or isinstance(action, Continue):
        return _rh.PostAction_Continue()
    if isinstance(action, Respond):
        return _rh.PostAction_Respond(action.body)
    if isinstance(action, Fail):
        return _rh.PostAction_Fail(action.error._wit())
    raise TypeError(f"post_response returned {action!r}: expected Continue(), Respond(...) or Fail(...)")


def _chunk(action: Any) -> Any:
    if action is None or isinstance(action, Continue):
        return _sh.ChunkAction_Continue()
    if isinstance(action, Drop):
        return _sh.ChunkAction_Drop()
    if isinstance(action, Hold):
        return _sh.ChunkAction_Hold()
    if isinstance(action, Fail):
        return _sh.ChunkAction_Fail(action.error._wit())
    raise TypeError(f"on_chunk returned {action!r}: expected Continue(), Drop(), Hold() or Fail(...)")


def _tool(action: Any) -> Any:
    if action is None or isinstance(action, Allow):
        return _th.ToolAction_Allow()
    if isinstance(action, Deny):
        return _th.ToolAction_Deny(action.reason)
    if isinstance(action, Answer):
        return _th.ToolAction_Answer(action.result)
    raise TypeError(f"on_tool_call returned {action!r}: expected Allow(), Deny(...) or Answer(...)")


def _body(value: Any) -> str:
    return value if isinstance(value, str) else _json.dumps(value)


def _llm_failure(e: BaseException) -> _Err:
    if isinstance(e, LlmError):
        return _Err(e._wit())
    return _Err(_types.LlmError(ErrorKind.INTERNAL, _describe(e), False, None))


def _log_failure(hook: str, e: BaseException) -> None:
    # The traceback goes to the plugin's log (the host's tracing), the short
    # text to the host as the hook's error.
    try:
        _log.log(LogLevel.DEBUG, f"{hook} raised:\n{''.join(_traceback.format_exception(e))}")
    except Exception:  # noqa: BLE001 - logging must not hide the real failure
        pass
