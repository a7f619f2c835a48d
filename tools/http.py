"""Tools over HTTP: serve a ``Toolset`` from a background thread, and call one with ``httpx``.

Protocol (JSON both ways):
* ``GET /tools`` -> ``{"tools": [openai schema, ...]}``
* ``POST /call`` with ``{"name": ..., "arguments": {...}}`` -> ``{"name", "results"}`` or ``{"name", "error"}``
  (status 200 for both: a tool error is a result, not a transport failure; 400 for a malformed request).

``HTTPToolset`` has ``Toolset``'s interface: it fetches the schemas once, validates calls locally with the
same code, and executes them on the server. Transport failures become error results: connection errors
are retried with exponential backoff (the request never reached the server, so a retry cannot run a tool
twice), then reported as "tool server unreachable at URL"; a read time-out is reported, not retried (the
tool may have run). The server applies its own toolset's time limit and output cap; give the client a
``timeout_s`` longer than the server's so the server's message wins.

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

import httpx

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


class HTTPToolset(Toolset):
    """A ``Toolset`` whose tools run on a tool server; validation stays local.

    Construction fetches ``GET /tools`` (retrying connection errors) and raises ``ConnectionError`` if
    the server cannot be reached: a misconfigured URL should fail loudly, before any rollout. After
    that, every failure is an error ``ToolResult``.
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
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.max_response_bytes = max_response_bytes
        self.backoff_s = backoff_s
        self._client = httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False)
        status, payload = self._request("GET", "/tools")
        if status is None:
            self._client.close()
            raise ConnectionError(payload)
        if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get("tools"), list):
            self._client.close()
            raise ConnectionError(f"tool server at {self.base_url} gave a bad /tools answer (status {status})")
        remote = [_tool_from_schema(s) for s in payload["tools"]]
        super().__init__(remote, timeout_s=timeout_s, max_output_chars=max_output_chars)

    def close(self) -> None:
        self._client.close()

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
        """(status, decoded JSON) or (None, error text) after retries; never raises for transport errors."""
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            try:
                with self._client.stream(method, url, json=body) as response:
                    data = bytearray()
                    for chunk in response.iter_bytes():
                        data += chunk
                        if len(data) > self.max_response_bytes:
                            return None, (f"response from the tool server at {self.base_url} is larger than "
                                          f"{self.max_response_bytes} bytes")
                    status = response.status_code
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                return None, f"tool server unreachable at {self.base_url}"
            except httpx.TimeoutException:
                return None, f"tool server at {self.base_url} timed out after {self._client.timeout.read:g} s"
            except httpx.HTTPError as e:
                return None, f"tool server at {self.base_url} failed: {type(e).__name__}: {e}"
            try:
                return status, json.loads(bytes(data))
            except (ValueError, RecursionError):
                return None, f"tool server at {self.base_url} sent a response that is not JSON"
        return None, f"tool server unreachable at {self.base_url}"  # pragma: no cover - loop always returns


def _tool_from_schema(schema: Any) -> Tool:
    function = schema.get("function", schema) if isinstance(schema, dict) else {}
    return Tool(name=function.get("name"), description=function.get("description", ""),
                parameters=function.get("parameters") or {}, fn=None)
