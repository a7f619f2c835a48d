"""Tools over HTTP: serve a ``Toolset`` from a background thread, and call one with ``httpcore`` (httpx's
transport layer).

Protocol (JSON both ways):
* ``GET /tools`` -> ``{"tools": [openai schema, ...]}``
* ``POST /call`` with ``{"name": ..., "arguments": {...}}`` -> ``{"name", "results"}`` or ``{"name", "error"}``
  (status 200 for both: a tool error is a result, not a transport failure; 400 for a malformed request).

``HTTPToolset`` has ``Toolset``'s interface: it fetches the schemas once, validates calls locally with the
same code, and executes them on the server. Transport failures become error results: connection errors
are retried with exponential backoff (the request never reached the server, so a retry cannot run a tool
twice), then reported as "tool server unreachable at URL"; a time-out is reported, not retried (the tool
may have run). ``timeout_s`` is a deadline for the whole call, retries included: connecting, sending and
reading the whole answer (every socket operation waits at most until the deadline, so a server that
dribbles its answer a byte at a time is cut at ``timeout_s`` too, not only one that goes silent). The
server applies its own toolset's time limit and output cap; give the client a ``timeout_s`` longer than
the server's so the server's message wins.

Both sides are loopback-only by default: ``serve_toolset`` refuses a non-loopback host unless
``allow_remote=True``, and ``HTTPToolset`` refuses a URL whose scheme and host are not in ``allowlist``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore

from tools.calls import ToolCall
from tools.schema import Tool
from tools.toolset import ToolResult, Toolset

__all__ = ["HTTPToolset", "ToolServer", "serve_toolset"]

_MAX_REQUEST_BYTES = 1_000_000


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- server --------------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: ToolServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds an idle keep-alive connection may hold its thread

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logging
        pass

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] == "/tools":
            self._send(200, {"tools": self.server.toolset.schemas("openai")})
        else:
            self._send(404, {"error": f"no such endpoint {self.path}; use GET /tools or POST /call"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != "/call":
            self._send(404, {"error": f"no such endpoint {self.path}; use GET /tools or POST /call"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send(413 if length > 0 else 400, {"error": "missing, bad or too large Content-Length"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, RecursionError):
            self._send(400, {"error": "the body is not valid JSON"})
            return
        if not isinstance(request, dict) or not isinstance(request.get("name"), str):
            self._send(400, {"error": 'expected {"name": str, "arguments": {...}}'})
            return
        arguments = request.get("arguments", {})
        result = self.server.toolset.execute(ToolCall(request["name"], arguments))
        self._send(200, result.to_message_item())


class ToolServer(ThreadingHTTPServer):
    """A running HTTP server for one toolset; a context manager; ``close()`` stops it."""

    daemon_threads = True

    def __init__(self, toolset: Toolset, host: str, port: int):
        self.toolset = toolset
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()  # open keep-alive connections, shut on close()
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="tool-server", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up (a client time-out); report anything else as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
        self.server_close()
        with self.lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> ToolServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve_toolset(toolset: Toolset, host: str = "127.0.0.1", port: int = 0,
                  allow_remote: bool = False) -> ToolServer:
    """Serve ``toolset`` on ``host:port`` (``port=0``: a free port; see ``.url``) from a daemon thread."""
    if not allow_remote and not _is_loopback(host):
        raise ValueError(f"refusing to serve tools on non-loopback host {host!r}; pass allow_remote=True "
                         f"to expose them")
    return ToolServer(toolset, host, port)


# -- client --------------------------------------------------------------------------------------------

def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _allowed(url: str, allowlist: Iterable[str]) -> bool:
    scheme, host, port = _origin(url)
    for entry in allowlist:
        e_scheme, e_host, e_port = _origin(entry)
        if scheme == e_scheme and host == e_host and (e_port is None or e_port == port):
            return True
    return False


class _Deadline(threading.local):
    """The monotonic time by which the calling thread's current request must be over (``None``: none)."""

    at: float | None = None

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` shortened to the time left before the deadline; ``error`` once it has passed."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the call's deadline has passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname,
                                        self._deadline.left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own synchronous sockets, connected and wrapped under the deadline."""

    def __init__(self, deadline: _Deadline):
        self._backend = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, self._deadline.left(timeout, httpcore.ConnectTimeout),
                                           local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:  # pragma: no cover
        stream = self._backend.connect_unix_socket(path, self._deadline.left(timeout, httpcore.ConnectTimeout),
                                                   socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's own retries, which are off
        self._backend.sleep(seconds)


class HTTPToolset(Toolset):
    """A ``Toolset`` whose tools run on a tool server; validation stays local.

    Construction fetches ``GET /tools`` (retrying connection errors) and raises ``ConnectionError`` if
    the server cannot be reached: a misconfigured URL should fail loudly, before any rollout. After
    that, every failure is an error ``ToolResult``. ``timeout_s`` bounds each request as a whole (see the
    module docstring); a copy with a lower ``timeout_s`` (``envs.toolace.env.bounded``) uses its own.
    """

    def __init__(self, base_url: str, allowlist: Iterable[str] = ("http://127.0.0.1", "http://localhost"),
                 timeout_s: float = 5.0, retries: int = 2, max_response_bytes: int = 1_000_000,
                 max_output_chars: int = 1_000_000, backoff_s: float = 0.05):
        # max_output_chars: a second guard; the server's own toolset cap is the one that normally applies.
        allowlist = tuple(allowlist)
        if not _allowed(base_url, allowlist):
            raise ValueError(f"tool server URL {base_url!r} is not in the allowlist {list(allowlist)}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.max_response_bytes = max_response_bytes
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._deadline = _Deadline()
        self._pool = httpcore.ConnectionPool(network_backend=_DeadlineBackend(self._deadline))
        status, payload = self._request("GET", "/tools")
        if status is None:
            self._pool.close()
            raise ConnectionError(payload)
        if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get("tools"), list):
            self._pool.close()
            raise ConnectionError(f"tool server at {self.base_url} gave a bad /tools answer (status {status})")
        remote = [_tool_from_schema(s) for s in payload["tools"]]
        super().__init__(remote, timeout_s=timeout_s, max_output_chars=max_output_chars)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> HTTPToolset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self, t: Tool, arguments: dict[str, Any]) -> ToolResult:
        status, payload = self._request("POST", "/call", {"name": t.name, "arguments": arguments})
        if status is None:
            return ToolResult(t.name, error=f"{t.name}: {payload}")
        if status != 200 or not isinstance(payload, dict):
            detail = payload.get("error") if isinstance(payload, dict) else payload
            return ToolResult(t.name, error=f"{t.name}: tool server answered {status}: {detail}")
        if isinstance(payload.get("error"), str):
            return ToolResult(t.name, error=payload["error"])
        if "results" not in payload:
            return ToolResult(t.name, error=f"{t.name}: malformed answer from the tool server")
        return self._result(t.name, payload["results"])

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int | None, Any]:
        """(status, decoded JSON) or (None, error text) after retries; never raises for transport errors.
        Everything, retries and back-off included, happens before the deadline ``timeout_s`` from now."""
        url = self.base_url + path
        timeout = self.timeout_s
        deadline = None if timeout is None else time.monotonic() + timeout
        headers = [(b"Accept", b"application/json")]
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False).encode()
            headers.append((b"Content-Type", b"application/json"))
        timed_out = (None, f"tool server at {self.base_url} timed out"
                           + (f" after {timeout:g} s" if timeout is not None else ""))

        def passed() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        self._deadline.at = deadline
        try:
            for attempt in range(self.retries + 1):
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), left)}
                try:
                    with self._pool.stream(method, url, headers=headers, content=content,
                                           extensions=extensions) as response:
                        data = bytearray()
                        for chunk in response.iter_stream():
                            data += chunk
                            if len(data) > self.max_response_bytes:
                                return None, (f"response from the tool server at {self.base_url} is larger "
                                              f"than {self.max_response_bytes} bytes")
                        status = response.status
                except (httpcore.ConnectError, httpcore.ConnectTimeout):
                    pause = self.backoff_s * 2**attempt
                    if attempt < self.retries and (deadline is None or time.monotonic() + pause < deadline):
                        time.sleep(pause)
                        continue
                    return timed_out if passed() else (None, f"tool server unreachable at {self.base_url}")
                except httpcore.TimeoutException:
                    return timed_out
                except Exception as e:  # noqa: BLE001 - a protocol error, a reset connection, ...
                    if passed():
                        return timed_out
                    return None, f"tool server at {self.base_url} failed: {type(e).__name__}: {e}"
                try:
                    return status, json.loads(bytes(data))
                except (ValueError, RecursionError):
                    return None, f"tool server at {self.base_url} sent a response that is not JSON"
            return None, f"tool server unreachable at {self.base_url}"  # pragma: no cover - the loop returns
        finally:
            self._deadline.at = None


def _tool_from_schema(schema: Any) -> Tool:
    function = schema.get("function", schema) if isinstance(schema, dict) else {}
    return Tool(name=function.get("name"), description=function.get("description", ""),
                parameters=function.get("parameters") or {}, fn=None)
