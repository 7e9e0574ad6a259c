"""A small blocking HTTP client over ``wasi:http/outgoing-handler``.

Every Python plugin can use it: the ``plugbox:python/plugin`` world
(``plugin-sdk/python/wit``) it is built for imports ``wasi:http``.

The host decides where a plugin may connect: a request to a host its manifest
was not granted (``permissions.network``) fails with ``HTTP-request-denied``
before any connection is made, reported as "network access to `<host>` is not
granted to this plugin".
"""

from typing import NamedTuple, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as t

from plugbox_plugin import PluginError

#: Most bytes of a response body read.
MAX_BODY = 1024 * 1024


class Reply(NamedTuple):
    status: int
    body: bytes


def describe(code, authority: str) -> str:
    """What an HTTP error code means, in words an operator can act on."""
    if isinstance(code, t.ErrorCode_HttpRequestDenied):
        return f"network access to `{authority}` is not granted to this plugin"
    if isinstance(code, t.ErrorCode_ConnectionRefused):
        return f"connection to `{authority}` refused"
    if isinstance(code, t.ErrorCode_ConnectionTimeout):
        return f"connecting to `{authority}` timed out"
    if isinstance(code, (t.ErrorCode_ConnectionReadTimeout, t.ErrorCode_HttpResponseTimeout)):
        return f"`{authority}` did not answer in time"
    if isinstance(code, (t.ErrorCode_DnsError, t.ErrorCode_DestinationNotFound)):
        return f"`{authority}` not found"
    name = type(code).__name__.removeprefix("ErrorCode_")
    return f"request to `{authority}` failed: {name}"


def _parse(url: str) -> Tuple[object, str, str]:
    if url.startswith("http://"):
        scheme, rest = t.Scheme_Http(), url[7:]
    elif url.startswith("https://"):
        scheme, rest = t.Scheme_Https(), url[8:]
    else:
        raise PluginError(f"`{url}` is not an http:// or https:// URL")
    cut = rest.find("/")
    authority, prefix = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    if not authority:
        raise PluginError(f"`{url}` has no host")
    return scheme, authority, prefix.rstrip("/")


def request(method: str, base_url: str, path: str, body: Optional[Tuple[str, bytes]] = None,
            timeout_ms: int = 2000) -> Reply:
    """Send ``method`` to ``base_url + path`` and read the whole response.
    ``body`` is ``(content type, bytes)``; ``timeout_ms`` bounds connecting
    and each wait for data. Failures raise :class:`PluginError`."""
    scheme, authority, prefix = _parse(base_url)
    if body is not None:
        headers = t.Fields.from_list([("content-type", body[0].encode()), ("content-length", str(len(body[1])).encode())])
    else:
        headers = t.Fields()
    req = t.OutgoingRequest(headers)
    methods = {"GET": t.Method_Get(), "POST": t.Method_Post()}
    req.set_method(methods.get(method) or t.Method_Other(method))
    req.set_scheme(scheme)
    req.set_authority(authority)
    req.set_path_with_query(prefix + path)
    outgoing = req.body()
    options = t.RequestOptions()
    nanos = timeout_ms * 1_000_000
    for setter in (options.set_connect_timeout, options.set_first_byte_timeout, options.set_between_bytes_timeout):
        try:
            setter(nanos)
        except Err:
            pass  # a host may not support every timeout; the hook's own deadline still applies
    try:
        pending = outgoing_handler.handle(req, options)
    except Err as e:
        raise PluginError(describe(e.value, authority)) from None
    if body is not None:
        stream = outgoing.write()
        data = body[1]
        for at in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[at:at + 4096])
        stream.__exit__(None, None, None)
    try:
        t.OutgoingBody.finish(outgoing, None)
    except Err as e:
        raise PluginError(describe(e.value, authority)) from None
    pending.subscribe().block()
    got = pending.get()
    if got is None:
        raise PluginError("no response after waiting for it")
    # The outer result is Err when the response was already taken; the
    # inner one carries the response or the error code.
    if isinstance(got, Err):
        raise PluginError("response already taken")
    inner = got.value
    if isinstance(inner, Err):
        raise PluginError(describe(inner.value, authority))
    response = inner.value
    status = response.status()
    incoming = response.consume()
    stream = incoming.stream()
    chunks = []
    size = 0
    while True:
        try:
            chunk = stream.blocking_read(64 * 1024)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise PluginError(f"reading the response: {e.value.value.to_debug_string()}") from None
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise PluginError(f"response body larger than {MAX_BODY} bytes")
    return Reply(status, b"".join(chunks))
