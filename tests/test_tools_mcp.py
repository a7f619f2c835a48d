"""Tools from a real MCP server (tests/mcp_server.py) over stdio and over Streamable HTTP on 127.0.0.1:
schemas, results, local validation, tool errors, time-outs, a server that dies, shutdown without orphans."""

from __future__ import annotations

import gc
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tools import ToolCall, ToolResult
from tools.mcp import MCPToolset, mcp_toolset

SERVER = str(Path(__file__).with_name("mcp_server.py"))
STDIO = [sys.executable, SERVER, "stdio"]
SERVED = ["convert", "echo", "fail", "crash", "slow", "increment", "picture", "big", "die", "pid", "whoami"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http_server() -> tuple[subprocess.Popen, str]:
    """The test server on a free loopback port, once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "http", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the MCP test server did not start (exit code {proc.poll()})") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie counts as alive: nobody reaped it)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def mcp_threads() -> int:
    return sum(t.name == "mcp-client" and t.is_alive() for t in threading.enumerate())


@pytest.fixture(scope="module")
def http_url():
    proc, url = start_http_server()
    yield url
    stop(proc)


@pytest.fixture(scope="module", params=["stdio", "http"])
def toolset(request):
    """One toolset per transport for the module (2 s per call: generous for a loaded CI machine)."""
    if request.param == "stdio":
        ts = MCPToolset(STDIO, timeout_s=2.0)
    else:
        ts = MCPToolset(url=request.getfixturevalue("http_url"), timeout_s=2.0)
    yield ts
    ts.close()


def run(ts, name, **arguments) -> ToolResult:
    return ts.execute(ToolCall(name, arguments))


# -- listing and calling ---------------------------------------------------------------------------------

def test_tools_and_schemas(toolset):
    assert toolset.names == SERVED  # the server's order; 'bad-name' is skipped
    assert "bad-name" not in toolset
    params = toolset["convert"].parameters
    assert params["required"] == ["amount", "currency"]
    assert params["properties"]["currency"]["enum"] == ["USD", "EUR"]
    assert params["properties"]["amount"]["type"] == "number"
    assert toolset["echo"].description == "Return the text unchanged."
    schema = toolset.schemas()[0]
    assert schema["type"] == "function" and schema["function"]["name"] == "convert"
    assert toolset.schemas("toolace")[0]["parameters"]["properties"]["amount"]["type"] == "float"


def test_calls_return_values(toolset):
    assert run(toolset, "convert", amount=3, currency="EUR") == ToolResult(
        "convert", content={"amount": 1.5, "currency": "EUR"})
    assert run(toolset, "echo", text="hi") == ToolResult("echo", content="hi")  # {"result": ...} unwrapped
    assert run(toolset, "echo", text="[1, 2]").content == "[1, 2]"  # a str result stays a str
    assert run(toolset, "picture").content == ["a dot", {"type": "image", "mimeType": "image/png"}]
    first = run(toolset, "increment").content
    assert isinstance(first, int) and run(toolset, "increment").content == first + 1  # one session, one state


def test_invalid_calls_are_rejected_locally(toolset, monkeypatch):
    before = run(toolset, "increment").content
    assert run(toolset, "increment", by=5).error == "increment: unknown parameter 'by' (expected: none)"
    assert run(toolset, "increment").content == before + 1  # the rejected call never ran

    sent = []
    monkeypatch.setattr(toolset._link.session, "call", lambda *a: sent.append(a))
    assert run(toolset, "convert", amount="ten", currency="EUR").error == (
        'convert: parameter \'amount\' must be of type number, got string "ten"')
    assert run(toolset, "convert", amount=1).error == "convert: missing required parameter 'currency'"
    assert run(toolset, "convert", amount=1, currency="GBP").error == (
        'convert: parameter \'currency\' must be one of ["USD", "EUR"], got "GBP"')
    assert sent == []


def test_tool_errors_are_results(toolset):
    failed = run(toolset, "fail", reason="no rates today")
    assert not failed.ok and failed.content is None
    assert failed.error.startswith("fail: ") and "no rates today" in failed.error
    crashed = run(toolset, "crash")
    assert not crashed.ok and "crash" in crashed.error and "secret details" not in crashed.error
    assert run(toolset, "echo", text="still fine").content == "still fine"


def test_unknown_tool(toolset):
    for name in ("nosuch", "bad-name"):
        result = run(toolset, name)
        assert not result.ok and result.error.startswith(f"unknown tool {name!r}; available tools: convert")


def test_output_cap(toolset):
    assert run(toolset, "big", n=100).content == "x" * 100
    assert run(toolset, "big", n=5000).error == (
        "big: output too large: 5002 characters (limit 4096); ask for less")
    long_error = run(toolset, "fail", reason="y" * 10_000).error
    assert len(long_error) == 4096 and long_error.endswith("...")


def test_slow_call_times_out_and_the_next_call_works(toolset):
    quick = toolset.subset(["slow", "echo"])  # a copy on the same connection, with its own limit
    quick.timeout_s = 0.5
    start = time.monotonic()
    result = run(quick, "slow", seconds=3)
    assert result == ToolResult("slow", error="slow: timed out after 0.5 s")
    assert time.monotonic() - start < 1.5
    start = time.monotonic()
    assert run(quick, "echo", text="after").content == "after"
    assert time.monotonic() - start < 1.0
    assert run(quick, "slow", seconds=0.05).content == "done"


def test_copies_share_the_connection(toolset):
    inc = toolset.subset(["increment"]).renamed({"increment": "inc"})
    assert inc.names == ["inc"] and inc._link is toolset._link
    n = run(toolset, "increment").content
    assert run(inc, "inc") == ToolResult("inc", content=n + 1)  # renamed locally, same remote tool
    assert inc["inc"](**{}) == n + 2  # Tool.__call__ reaches the server too
    del inc
    gc.collect()  # a collected copy must not close the shared connection
    assert run(toolset, "increment").content == n + 3


# -- construction ---------------------------------------------------------------------------------------

def test_non_loopback_urls_are_refused_before_connecting(monkeypatch):
    import tools.mcp

    monkeypatch.setattr(tools.mcp, "_Session", lambda *a: pytest.fail("tried to connect"))
    for url in ("http://example.com/mcp", "http://10.0.0.1:8000/mcp", "ftp://127.0.0.1/mcp", "127.0.0.1:80"):
        with pytest.raises(ValueError, match="URL"):
            MCPToolset(url=url)
    with pytest.raises(ValueError, match="not in the allowlist"):
        MCPToolset(url="http://127.0.0.1:8000/mcp", allowlist=["http://localhost"])
    with pytest.raises(ValueError, match="exactly one"):
        MCPToolset()
    with pytest.raises(ValueError, match="exactly one"):
        MCPToolset(STDIO, url="http://127.0.0.1:8000/mcp")


def test_allowlisted_url_with_no_server_is_a_connection_error():
    url = f"http://localhost:{free_port()}/mcp"
    threads = mcp_threads()
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot connect to MCP server at {url}: ConnectError"):
        MCPToolset(url=url, allowlist=["http://localhost"], connect_timeout_s=5)
    assert time.monotonic() - start < 3
    assert mcp_threads() == threads  # the loop thread ended


@pytest.mark.parametrize("command, connect_timeout_s, reason", [
    (["/nonexistent/mcp-server", "--stdio"], 5, "FileNotFoundError"),
    ([sys.executable, "-c", "import sys; sys.exit(3)"], 5, "Connection closed"),  # dies during initialize
    ([sys.executable, "-c", "import sys; sys.stdin.read()"], 0.5, "no answer within connect_timeout_s=0.5 s"),
])
def test_bad_command_is_a_quick_connection_error(command, connect_timeout_s, reason):
    threads = mcp_threads()
    start = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        MCPToolset(command, connect_timeout_s=connect_timeout_s)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot connect to MCP server `{command[0]}")
    assert reason in message
    assert time.monotonic() - start < 3
    assert mcp_threads() == threads  # the loop thread ended


# -- a server that goes away; closing ---------------------------------------------------------------------

@pytest.mark.parametrize("how", ["killed between calls", "exits during a call"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_server_that_dies_gives_error_results(transport, how):
    threads = mcp_threads()
    proc = None
    if transport == "stdio":
        ts = MCPToolset(STDIO, timeout_s=3.0)
    else:
        proc, url = start_http_server()
        ts = MCPToolset(url=url, timeout_s=3.0)
    try:
        pid = run(ts, "pid").content
        assert run(ts, "echo", text="up").content == "up"
        # An HTTP server is the test's own child: reap it. A stdio server is the toolset's: it reaps.
        gone = (lambda: proc.wait(timeout=10) is not None) if proc is not None else (lambda: wait_gone(pid))
        calls = [("echo", {"text": "anyone?"})] * 2  # the call that finds it gone, and a later one
        if how == "killed between calls":
            os.kill(pid, 9)
            assert gone()
        else:
            calls.insert(0, ("die", {}))
        for name, arguments in calls:
            start = time.monotonic()
            result = ts.execute(ToolCall(name, arguments))
            assert not result.ok and result.error.startswith(f"{name}: lost the connection to MCP server")
            assert time.monotonic() - start < 2.5  # noticed, not timed out
        assert gone()
    finally:
        ts.close()
        if proc is not None and proc.poll() is None:
            stop(proc)
    assert mcp_threads() == threads  # the loop thread ended


def test_close_leaves_no_process_or_thread(caplog):
    threads = mcp_threads()
    with caplog.at_level(logging.WARNING, logger="tools.mcp"):
        with MCPToolset(STDIO) as ts:
            sub = ts.subset(["pid", "echo"])
            pid = run(sub, "pid").content
            assert pid != os.getpid() and alive(pid)
            assert mcp_threads() == threads + 1
    assert "skipping tool 'bad-name': its name is not a valid call name" in caplog.text
    assert ts.closed and not alive(pid)  # terminated and reaped by the time close() returns
    assert mcp_threads() == threads
    ts.close()  # idempotent
    closed = f"echo: the connection to MCP server `{' '.join(STDIO)}` is closed"
    assert run(ts, "echo", text="x").error == closed
    assert sub.closed and run(sub, "echo", text="x").error == closed  # closing the original closed the copy


def test_a_copy_keeps_the_connection_and_gc_closes_the_last():
    ts = MCPToolset(STDIO)
    sub = ts.subset(["pid"])
    pid = run(sub, "pid").content
    del ts
    gc.collect()
    assert alive(pid) and run(sub, "pid").content == pid  # a copy keeps the connection
    del sub
    gc.collect()
    assert wait_gone(pid)  # nobody closed it: the finalizer did


def test_an_unclosed_toolset_stops_its_server_at_exit():
    # The server outlives its stdin by a minute, so only our exit hook can stop it; the SDK's grace period
    # before it sends SIGTERM is cut from 2 s to keep the test short.
    script = ("import sys, mcp.client.stdio; from tools import ToolCall; from tools.mcp import MCPToolset; "
              "mcp.client.stdio.PROCESS_TERMINATION_TIMEOUT = 0.2; "
              f"ts = MCPToolset({STDIO + ['--linger', '60']!r}); print(ts.execute(ToolCall('pid', {{}})).content)")
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert wait_gone(int(done.stdout), within=5)
    assert "Traceback" not in done.stderr and "destroyed" not in done.stderr  # a clean shutdown


# -- from a config ----------------------------------------------------------------------------------------

def test_mcp_toolset_from_spec(tmp_path, http_url):
    spec = {"command": STDIO, "env": {"CHORDGYM_MCP_TAG": "seven"}, "cwd": str(tmp_path), "timeout_s": 1.5,
            "max_output_chars": 200}
    with mcp_toolset(spec) as ts:
        assert ts.timeout_s == 1.5 and ts.max_output_chars == 200
        assert run(ts, "whoami").content == {"cwd": str(tmp_path), "tag": "seven"}
    with mcp_toolset({"url": http_url}) as ts:
        assert run(ts, "echo", text="over http").content == "over http"


@pytest.mark.parametrize("spec, match", [
    ({"command": STDIO, "cmd": ["x"]}, "unknown key.*'cmd'"),
    ({"env": {}}, "exactly one of 'command'"),
    ({"command": STDIO, "url": "http://127.0.0.1/mcp"}, "exactly one of 'command'"),
    ({"command": []}, "'command'"),
    ({"url": 8000}, "'url'"),
    ({"command": STDIO, "env": ["A=1"]}, "'env'"),
    ({"command": STDIO, "timeout_s": 0}, "'timeout_s'"),
    ({"command": STDIO, "max_output_chars": "big"}, "'max_output_chars'"),
    ({"url": "http://example.com/mcp"}, "loopback"),
    (["command"], "mapping"),
])
def test_mcp_toolset_rejects_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        mcp_toolset(spec)
