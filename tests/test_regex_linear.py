"""Every pattern that reads model output runs in linear time, on the inputs that make backtracking blow up.

For each case the time on an adversarial text of n characters is compared, in the same run, with a plain
Python scan of that text (``for ch in text``): no absolute seconds, so a slow or busy machine cannot make
it flaky. A linear pattern stays within a constant multiple of the scan at n and at 16n (under 500: the
tokenizer that reads keyword arguments is a Python loop, ~150x); a quadratic one grows 16x faster than
the scan (the cubic fence pattern this file was written for took 7.8 s at 3,000
characters, about 100,000 times a scan). The ratios are printed (``pytest -n 0 -s``) for docs/reliability.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from algorithms.hinted import call_list_marker
from envs.bfcl.checker import _NORMALISE
from envs.math.answer import has_boxed_tag, last_boxed
from envs.math.expert import split_final_mark
from envs.math.verify import quick_verdict
from envs.toolace.env import _HAS_TEXT
from tools.call_grammar import _IDENT
from tools.calls import looks_like_calls, parse_tool_calls
from tools.catalog.text import _EMAILS
from tools.schema import is_call_name


def _safe(fn: Callable[[str], object]) -> Callable[[str], object]:
    def run(text: str) -> object:
        try:
            return fn(text)
        except ValueError:  # a parse error is an answer too; only the time it took matters here
            return None
    return run


# (name, function of the model's text, adversarial text of about n characters)
CASES: list[tuple[str, Callable[[str], object], Callable[[int], str]]] = [
    ("code fence, then blanks", lambda t: looks_like_calls(t, "auto"), lambda n: "```" + " " * n + "a"),
    ("code fence, tabs, no close", lambda t: looks_like_calls(t, "auto"), lambda n: "```py" + "\t \n" * (n // 3) + "x"),
    ("open bracket, then blanks", lambda t: looks_like_calls(t, "pythonic"), lambda n: "[" + " " * n + "a"),
    ("keyword before '=' many times", lambda t: looks_like_calls(t, "pythonic"), lambda n: "f(" + "from = 1, " * (n // 10)),
    ("keyword before ',' many times", lambda t: looks_like_calls(t, "pythonic"), lambda n: "from , " * (n // 7)),
    ("underscore runs", _safe(lambda t: parse_tool_calls(t, "pythonic")), lambda n: "[f(" + "_" * n + "=1 1)]"),
    ("hermes tags, never closed", _safe(lambda t: parse_tool_calls(t, "json")), lambda n: "<tool_call>" * (n // 11)),
    ("JSON start, then blanks", lambda t: looks_like_calls(t, "json"), lambda n: '[ {"name"' + " " * n + "x"),
    ("boxed, then blanks", last_boxed, lambda n: "\\boxed" + " " * n),
    ("many boxed openings", has_boxed_tag, lambda n: "\\boxed " * (n // 7)),
    ("math answer normalisation", lambda t: quick_verdict("1", t), lambda n: "\\text{" + " " * n),
    ("final #### mark after blanks", split_final_mark, lambda n: "a\n" + " " * n + "b"),
    ("hinted call-list marker", call_list_marker, lambda n: "[" + " " * (n // 2) + "a" * (n // 2)),
    ("plain-text answer check", lambda t: _HAS_TEXT.search(t), lambda n: " " * n),
    ("e-mail extraction tool", lambda t: _EMAILS.findall(t), lambda n: "a" * (n // 2) + "@" + "b" * (n // 2)),
    ("dotted call names", is_call_name, lambda n: "a." * (n // 2) + "!"),
    ("BFCL string normalisation", lambda t: _NORMALISE.sub("", t), lambda n: " ,./" * (n // 4)),
    ("guided identifier characters", lambda t: _IDENT.fullmatch(t), lambda n: "a" * n),
]

N = 5_000
GROWTH = 16  # the second text is 16x longer: a linear cost grows ~16x, a quadratic one ~256x


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _scan(text: str) -> None:
    for _ in text:
        pass


@pytest.mark.parametrize("name, fn, make", CASES, ids=[c[0] for c in CASES])
def test_pattern_is_linear_on_adversarial_text(name: str, fn: Callable[[str], object], make: Callable[[int], str]) -> None:
    ratios = []
    for n in (N, GROWTH * N):
        text = make(n)
        ratios.append(_best(lambda text=text: fn(text)) / _best(lambda text=text: _scan(text)))
    print(f"{name}: {ratios[0]:.2f}x a plain scan at {N} characters, {ratios[1]:.2f}x at {GROWTH * N}")
    assert ratios[0] < 500 and ratios[1] < 500, f"{name}: {ratios} times a plain scan"
    assert ratios[1] < 5 * max(ratios[0], 0.05), f"{name}: the cost grows faster than the text ({ratios})"
