"""Tools over HTTP, loopback only: a real server round trip, a server that is down, limits."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from tools import ToolCall, ToolResult, Toolset, tool
from tools.http import HTTPToolset, serve_toolset


@tool
def add(a: int, b: int = 0) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


@tool
def slow(s: float) -> str:
    """Sleep, then answer.

    Args:
        s: Seconds to sleep.
    """
    time.sleep(s)
    return "done"


@tool
def big(n: int) -> str:
    """Return n characters.

    Args:
        n: How many.
    """
    return "x" * n


@pytest.fixture
def server():
    with serve_toolset(Toolset([add, slow, big], timeout_s=0.5, max_output_chars=100_000)) as srv:
        yield srv


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_round_trip(server):
    assert server.url.startswith("http://127.0.0.1:")
    with HTTPToolset(server.url) as remote:
        assert remote.names == ["add", "slow", "big"] and "add" in remote and len(remote) == 3
        assert remote.schemas() == server.toolset.schemas()
        assert remote.schemas("toolace") == server.toolset.schemas("toolace")
        assert remote.execute(ToolCall("add", {"a": 2, "b": 3})) == ToolResult("add", content=5)
        assert remote.validate(ToolCall("add", {})) == "add: missing required parameter 'a'"
        assert "unknown tool 'mul'" in remote.execute(ToolCall("mul", {})).error
        results = remote.execute_all([ToolCall("add", {"a": 1}), ToolCall("add", {"a": "x"})])
        assert [r.ok for r in results] == [True, False]
        assert json.loads(remote.tool_message(results)["content"])[0] == {"name": "add", "results": 1}
        assert remote.subset(["add"]).names == ["add"]


def test_raw_endpoints(server):
    with httpx.Client(trust_env=False) as client:
        assert client.get(server.url + "/tools").json()["tools"][0]["function"]["name"] == "add"
        answer = client.post(server.url + "/call", json={"name": "add", "arguments": {"a": 1, "b": 1}})
        assert answer.json() == {"name": "add", "results": 2}
        answer = client.post(server.url + "/call", json={"name": "add", "arguments": {}})
        assert answer.json() == {"name": "add", "error": "add: missing required parameter 'a'"}
        assert client.post(server.url + "/call", content=b"{oops").status_code == 400
        assert client.get(server.url + "/nothing").status_code == 404


def test_server_side_limits_come_back_as_errors(server):
    with HTTPToolset(server.url, timeout_s=5.0) as remote:
        assert remote.execute(ToolCall("slow", {"s": 2.0})).error == "slow: timed out after 0.5 s"


def test_client_timeout(server):
    with HTTPToolset(server.url, timeout_s=0.3) as remote:
        start = time.monotonic()
        result = remote.execute(ToolCall("slow", {"s": 1.0}))
        assert "timed out" in result.error and time.monotonic() - start < 1.0


def test_oversized_response(server):
    with HTTPToolset(server.url, max_response_bytes=1000) as remote:
        assert remote.execute(ToolCall("big", {"n": 10})).ok
        assert "larger than 1000 bytes" in remote.execute(ToolCall("big", {"n": 5000})).error


def test_server_down_after_start():
    srv = serve_toolset(Toolset([add]))
    remote = HTTPToolset(srv.url, retries=2, backoff_s=0.01)
    assert remote.execute(ToolCall("add", {"a": 1})).content == 1
    srv.close()
    result = remote.execute(ToolCall("add", {"a": 1}))
    assert result.error == f"add: tool server unreachable at {srv.url}"
    remote.close()


def test_server_down_at_construction():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ConnectionError, match="unreachable"):
        HTTPToolset(url, retries=1, backoff_s=0.01)


@pytest.mark.parametrize("url", ["http://example.com", "http://127.0.0.1.evil.com:80", "https://127.0.0.1:1",
                                 "ftp://localhost", "http://10.0.0.1:8000"])
def test_allowlist(url):
    with pytest.raises(ValueError, match="allowlist"):
        HTTPToolset(url)


def test_server_refuses_non_loopback_host():
    with pytest.raises(ValueError, match="non-loopback"):
        serve_toolset(Toolset([add]), host="0.0.0.0")


# -- a server that answers too slowly, a byte at a time ----------------------------------------------------

class DribblingServer:
    """A raw HTTP/1.1 server on 127.0.0.1: ``GET /tools`` is answered at once; ``POST /call`` gets one byte
    of its answer every ``interval_s`` (of the body, or of the status line and headers), never the end."""

    TOOLS = json.dumps({"tools": [add.openai_schema()]}).encode()

    def __init__(self, where: str, interval_s: float = 0.5):
        self.where, self.interval_s = where, interval_s
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                if head.startswith(b"GET /tools"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(self.TOOLS)).encode() + b"\r\n\r\n" + self.TOOLS)
                    continue
                answer = b'{"name": "add", "results": 3}'.ljust(200)
                headers = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                if self.where == "body":
                    conn.sendall(headers)
                    drip = answer
                else:
                    drip = headers + answer
                for byte in drip:
                    if self.stop.wait(self.interval_s):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        return
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(2)


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_dribbling_server_is_cut_at_the_clients_deadline(where):
    """One byte every 0.5 s never trips a per-read time-out of 1 s; the call's deadline cuts it all the same
    (it used to take 200 x 0.5 s = 100 s here)."""
    server = DribblingServer(where)
    timeout_s = 1.0
    try:
        with HTTPToolset(server.url, timeout_s=timeout_s) as remote:
            start = time.monotonic()
            result = remote.execute(ToolCall("add", {"a": 1, "b": 2}))
            elapsed = time.monotonic() - start
        assert result.error == f"add: tool server at {server.url} timed out after 1 s"
        assert elapsed < 3 * timeout_s
    finally:
        server.close()


def test_the_deadline_covers_connection_retries():
    url = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="unreachable|timed out"):
        HTTPToolset(url, timeout_s=0.3, retries=50, backoff_s=0.05)
    assert time.monotonic() - start < 3 * 0.3  # 50 retries with doubling back-off would take hours
