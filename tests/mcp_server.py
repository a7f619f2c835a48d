"""A small, real MCP server for the ``tools.mcp`` tests, built with the ``mcp`` package's ``MCPServer``.

Run it as ``python tests/mcp_server.py stdio`` or ``python tests/mcp_server.py http --port N`` (Streamable
HTTP on ``127.0.0.1:N/mcp``). Its tools cover what the client must handle: a structured result
(``convert``), plain text (``echo``), a tool error (``fail``), a crash (``crash``), a slow call
(``slow``), state kept across calls (``increment``), the server's pid and environment (``pid``,
``whoami``), a mixed text-and-image result (``picture``), a large result (``big``), a suicide (``die``)
and one name that is not a valid call name (``bad-name``, which the client must skip).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ImageContent, TextContent

_RATES = {"USD": 1.0, "EUR": 0.5}

server = MCPServer("chordgym-test", log_level="CRITICAL")  # quiet: tool errors are expected here
_counter = {"n": 0}


@server.tool()
def convert(amount: float, currency: Literal["USD", "EUR"]) -> dict:
    """Convert an amount of US dollars into a currency."""
    return {"amount": amount * _RATES[currency], "currency": currency}


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Fail on purpose with ``reason``."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """Raise an unexpected exception (its text stays on the server)."""
    raise RuntimeError("secret details")


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "done"


@server.tool()
def increment() -> int:
    """Add one to a counter kept by the server and return it."""
    _counter["n"] += 1
    return _counter["n"]


@server.tool(structured_output=False)
def picture() -> list:
    """Return a caption and a one-pixel PNG."""
    return [TextContent(type="text", text="a dot"),
            ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png")]


@server.tool()
def big(n: int) -> str:
    """Return ``n`` characters."""
    return "x" * n


@server.tool()
def die() -> str:
    """Exit the server process at once, without answering."""
    os._exit(3)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
def whoami() -> dict:
    """The working directory and the CHORDGYM_MCP_TAG environment variable."""
    return {"cwd": os.getcwd(), "tag": os.environ.get("CHORDGYM_MCP_TAG")}


@server.tool(name="bad-name")
def bad_name() -> str:
    """A tool whose name cannot be written as a call."""
    return "unreachable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--linger", type=float, default=0.0,
                        help="stdio: seconds to stay alive after stdin closes (a server that must be killed)")
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run("stdio")
        time.sleep(args.linger)
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
