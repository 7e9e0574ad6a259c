"""The component's WIT exports, routed to the class registered with
:func:`plugbox_plugin.export`. An app module brings them into its namespace
(componentize-py looks them up there)::

    from plugbox_plugin.exports import *

Every interface of the ``plugin`` world is exported; the host calls only the
hooks the manifest lists, so the defaults of :class:`plugbox_plugin.Plugin`
answer the rest. The exported resource ``provider.chunk-stream`` is
:class:`ChunkStream`, which componentize-py finds through the top-level
``provider`` module next to this package.
"""

from typing import List, Optional

import plugbox_plugin as _pb
from plugbox_plugin import (
    Chunk as _Chunk,
    Config as _Config,
    Request as _Request,
    Response as _Response,
    StreamEnd as _StreamEnd,
    ToolCallRef as _ToolCallRef,
)
from componentize_py_types import Err as _Err
from wit_world import exports as _exports
from wit_world.imports import types as _types

from provider import ChunkStream

__all__ = [
    "ChunkStream", "Lifecycle", "RequestHooks", "StreamHooks", "ToolHooks", "Provider", "DeviceHooks", "DeviceProbe", "Endpoint",
]


class Lifecycle(_exports.Lifecycle):
    def init(self, config: str) -> None:
        if _pb._PLUGIN_CLASS is None:
            raise _Err("no plugin class registered: call plugbox_plugin.export(YourPlugin) in the app module")
        try:
            _pb._INSTANCE = _pb._PLUGIN_CLASS(_Config.from_json(config))
        except Exception as e:  # noqa: BLE001 - every failure refuses the load, with its text
            _pb._log_failure("init", e)
            raise _pb._failure(e) from None

    def shutdown(self) -> None:
        if _pb._INSTANCE is not None:
            try:
                _pb._INSTANCE.shutdown()
            except Exception as e:  # noqa: BLE001 - shutdown has no error channel
                _pb._log_failure("shutdown", e)


class RequestHooks(_exports.RequestHooks):
    def pre_request(self, req):
        try:
            return _pb._pre(_pb._instance().pre_request(_Request(req)))
        except _pb.LlmError as e:
            return _pb._pre(_pb.Fail(e))
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("pre_request", e)
            raise _pb._failure(e) from None

    def post_response(self, req, resp):
        try:
            return _pb._post(_pb._instance().post_response(_Request(req), _Response(resp)))
        except _pb.LlmError as e:
            return _pb._post(_pb.Fail(e))
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("post_response", e)
            raise _pb._failure(e) from None


class StreamHooks(_exports.StreamHooks):
    def on_chunk(self, req, chunk):
        try:
            return _pb._chunk(_pb._instance().on_chunk(_Request(req), _Chunk(chunk)))
        except _pb.LlmError as e:
            return _pb._chunk(_pb.Fail(e))
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("on_chunk", e)
            raise _pb._failure(e) from None

    def on_stream_end(self, req, end) -> None:
        try:
            _pb._instance().on_stream_end(_Request(req), _StreamEnd(end))
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("on_stream_end", e)
            raise _pb._failure(e) from None


class ToolHooks(_exports.ToolHooks):
    def on_tool_call(self, req, call):
        try:
            return _pb._tool(_pb._instance().on_tool_call(_Request(req), _ToolCallRef(call)))
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("on_tool_call", e)
            raise _pb._failure(e) from None


class Provider(_exports.Provider):
    def provider_type(self) -> str:
        return _pb._instance().provider_type()

    def complete(self, req) -> str:
        try:
            return _pb._body(_pb._instance().complete(_Request(req)))
        except _pb.LlmError as e:
            raise _pb._llm_failure(e) from None
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("complete", e)
            raise _pb._llm_failure(e) from None

    def start_stream(self, req):
        try:
            return ChunkStream(_pb._instance().start_stream(_Request(req)))
        except _pb.LlmError as e:
            raise _pb._llm_failure(e) from None
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("start_stream", e)
            raise _pb._llm_failure(e) from None


class DeviceHooks(_exports.DeviceHooks):
    def on_device_probe(self, reports: List[_types.DeviceReport]) -> List[_types.DeviceReport]:
        try:
            return list(_pb._instance().on_device_probe(reports))
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("on_device_probe", e)
            raise _pb._failure(e) from None


class DeviceProbe(_exports.DeviceProbe):
    def probe(self) -> List[_types.DeviceReport]:
        try:
            return list(_pb._instance().probe())
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("probe", e)
            raise _pb._failure(e) from None


class Endpoint(_exports.Endpoint):
    def mode(self) -> str:
        return _pb._instance().mode()

    def supported_endpoints(self) -> List[str]:
        return list(_pb._instance().supported_endpoints())

    def validate_request(self, path: str, model_alias: str) -> None:
        try:
            _pb._instance().validate_request(path, model_alias)
        except Exception as e:  # noqa: BLE001 - the reason is the exception's own text
            raise _Err(str(e) or type(e).__name__) from None

    def health_check(self, model_alias: str, base_url: str, elapsed_ms: int, timeout_ms: int) -> _types.Health:
        try:
            return _pb._instance().health_check(model_alias, base_url, elapsed_ms, timeout_ms)
        except Exception as e:  # noqa: BLE001
            _pb._log_failure("health_check", e)
            return _pb.unhealthy(f"health check failed: {_pb._describe(e)}")
