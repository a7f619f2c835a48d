"""Records from a data file, one at a time: JSON Lines or one JSON array, either gzipped.

``records`` yields ``(line, value, None)`` for each record, or ``(line, None, problem)`` for one that cannot be
decoded (not UTF-8, not JSON), so that the caller decides whether a broken record stops the reading. A JSON
array is decoded element by element from a growing buffer, never the whole file at once unless one element
is that big. Knows nothing of what a record means: ``envs.toolcalls.data`` reads the formats.
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
from collections.abc import Iterator
from typing import IO, Any

_CHUNK = 1 << 16  # bytes read at a time from a JSON array file


class RecordError(Exception):
    """A problem with the record being read (its text names the field); the reader turns it into
    ``DataFormatError`` with the file and line."""


def open_binary(path: str) -> IO[bytes]:
    """The file's bytes, un-gzipped when it starts with gzip's magic number (whatever its name)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115


def records(f: IO[bytes]) -> Iterator[tuple[int, Any, str | None]]:
    """``(line, value, None)`` per record, or ``(line, None, problem)`` for one that is not JSON."""
    head = f.read(4096)
    f.seek(0)
    first = head.removeprefix(codecs.BOM_UTF8).lstrip()
    if first.startswith(b"["):
        yield from _array_records(f)
    else:
        yield from _jsonl_records(f)


def _jsonl_records(f: IO[bytes]) -> Iterator[tuple[int, Any, str | None]]:
    for lineno, raw in enumerate(f, 1):
        if lineno == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield lineno, None, f"the line is not valid UTF-8 (byte {e.start + 1})"
            continue
        try:
            yield lineno, json_loads(text.rstrip("\r\n")), None
        except RecordError as e:
            yield lineno, None, str(e)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def json_loads(text: str, where: str = "") -> Any:
    """JSON text to a value; ``RecordError`` naming ``where`` (NaN and Infinity are not JSON)."""
    prefix = f"{where}: " if where else ""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        return _raise(f"{prefix}invalid JSON ({e.msg} at line {e.lineno} column {e.colno})"
                      if e.lineno > 1 else f"{prefix}invalid JSON ({e.msg} at column {e.colno})")
    except (ValueError, RecursionError) as e:
        return _raise(f"{prefix}invalid JSON ({e if isinstance(e, ValueError) else 'nested too deeply'})")


def _raise(problem: str) -> Any:
    raise RecordError(problem)


_WS = re.compile(r"[ \t\r\n]*")


def _array_records(f: IO[bytes]) -> Iterator[tuple[int, Any, str | None]]:
    """The elements of a JSON array file, decoded one at a time from a growing buffer (never the whole
    file unless one element is that big). A syntax error ends the file: past it nothing can be trusted."""
    text_decoder = codecs.getincrementaldecoder("utf-8")()
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    buf, pos, line, eof, want = "", 0, 1, False, _CHUNK

    def fill() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        if pos > (1 << 20):  # drop what was consumed
            buf, pos = buf[pos:], 0
        chunk = f.read(want)
        eof = not chunk
        buf += text_decoder.decode(chunk, final=eof)
        return not eof

    def skip_ws() -> None:
        nonlocal pos, line
        while True:
            end = _WS.match(buf, pos).end()  # type: ignore[union-attr]
            line += buf.count("\n", pos, end)
            pos = end
            if pos < len(buf) or not fill():
                return

    try:
        skip_ws()
        if buf.startswith("\ufeff"):
            pos += 1
            skip_ws()
        pos += 1  # the "[" that made this an array file
        skip_ws()
        if buf[pos:pos + 1] == "]":
            return
        while True:
            skip_ws()
            if pos >= len(buf):
                yield line, None, "the JSON array ends without its closing ']'"
                return
            start = line
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    if end < len(buf) or eof:
                        break
                    fill()  # a number or word may go on in the next chunk
                except json.JSONDecodeError as e:
                    incomplete = e.msg.startswith("Unterminated string") or e.pos >= len(buf) - 8
                    if eof or not incomplete:
                        where = line + buf.count("\n", pos, e.pos)
                        yield where, None, f"invalid JSON in the array element starting on line {start} ({e.msg})"
                        return
                    want = max(_CHUNK, len(buf) - pos)  # grow geometrically: big elements stay linear
                    fill()
                except (ValueError, RecursionError) as e:
                    yield start, None, f"invalid JSON ({e if isinstance(e, ValueError) else 'nested too deeply'})"
                    return
            want = _CHUNK
            line += buf.count("\n", pos, end)
            pos = end
            yield start, value, None
            skip_ws()
            mark = buf[pos:pos + 1]
            if mark == ",":
                pos += 1
                continue
            if mark == "]":
                pos += 1
                skip_ws()
                if pos < len(buf):
                    yield line, None, "unexpected text after the JSON array"
                return
            found = repr(mark) if mark else "the end of the file"
            yield line, None, f"expected ',' or ']' after the array element, found {found}"
            return
    except UnicodeDecodeError as e:
        yield line, None, f"the file is not valid UTF-8 ({e.reason})"
