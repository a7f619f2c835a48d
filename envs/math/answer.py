r"""Finding the final answer in a response: the content of its last well-formed ``\boxed{...}``.

The rule is strict on purpose, so that the format cannot be gamed:

- only the *last* ``\boxed{`` counts; boxing several candidates earns nothing more than boxing the last one
  (math-verify's own extraction would try every candidate, which would reward hedging, so it never sees
  the whole response);
- the box must close: braces are counted (``\{`` and ``\}`` are escaped literals and do not count); a last
  ``\boxed{`` that never closes (a response cut mid-answer, or an endless ``\boxed{\boxed{...``) means the
  response has no final answer, even if an earlier box was complete;
- an empty box is no answer.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\s*\{")


def last_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` in ``text`` if it is balanced and non-empty, else ``None``."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "{}":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                content = text[start:i].strip()
                return content or None
        i += 1
    return None


def has_boxed_tag(text: str) -> bool:
    r"""Whether ``text`` contains ``\boxed{`` at all (well-formed or not)."""
    return _BOXED.search(text) is not None
