"""Turning sampled arguments into user requests and tool results into the expert's answer text."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from random import Random
from typing import Any

_FORMATTER = string.Formatter()

OPENERS = ("", "", "", "Hi! ", "Hey, ", "Hello. ", "Quick question: ", "Hi there, ")
CLOSERS = ("", "", "", " Thanks!", " Thank you.", " Thanks in advance.")


def lower_first(text: str) -> str:
    """Lower-case the first letter for use mid-sentence, unless it starts "I", an acronym or a name-like token."""
    word = text.split(" ", 1)[0]
    if not text or word in ("I", "I'm", "I'd", "I'll", "I've") or (len(word) > 1 and word[1].isupper()):
        return text
    return text[0].lower() + text[1:]


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a phrasing (format specs and indexing ignored)."""
    out = set()
    for _, field, _, _ in _FORMATTER.parse(text):
        if field:
            out.add(field.split("[")[0].split(".")[0])
    return out


def value_text(value: Any) -> str:
    """How a user would write a value: ``1500.0`` -> ``1500``, lists as "a, b and c"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, list):
        items = [value_text(v) for v in value]
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "nothing"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items())
    return str(value)


def render_request(phrasings: tuple[str, ...], args: Mapping[str, Any], rng: Random,
                   render: Mapping[str, Callable[[Any], str]] | None = None, decorate: bool = True) -> str:
    """Pick a phrasing that mentions exactly the sampled arguments and fill it in."""
    candidates = [p for p in phrasings if placeholders(p) == set(args)]
    if not candidates:
        raise ValueError(f"no phrasing mentions exactly {sorted(args)}")
    render = render or {}
    fields = {k: render[k](v) if k in render else value_text(v) for k, v in args.items()}
    text = rng.choice(candidates).format(**fields)
    if decorate:
        opener = rng.choice(OPENERS)
        text = (opener + lower_first(text)) if opener.endswith(", ") else opener + text
        text += rng.choice(CLOSERS) if text.endswith((".", "?", "!")) else ""
    return text


def _short(value: Any, depth: int = 0) -> str:
    if isinstance(value, Mapping):
        inner = ", ".join(f"{str(k).replace('_', ' ')} {_short(v, depth + 1)}" for k, v in value.items())
        return f"({inner})" if depth else inner
    if isinstance(value, list):
        if not value:
            return "none"
        shown = [_short(v, depth + 1) for v in value[:4]]
        more = f" and {len(value) - 4} more" if len(value) > 4 else ""
        return "; ".join(shown) + more
    if value is None:
        return "none"
    return value_text(value)


def summarize(name: str, result: Any) -> str:
    """A plain-language rendering of any tool result, used when a template has no answer format."""
    return f"{name.replace('_', ' ')}: {_short(result)}."


def answer_text(name: str, args: Mapping[str, Any], result: Any, fmt: str | None) -> str:
    """The sentence an expert writes about one call's result."""
    if fmt:
        try:
            return fmt.format(a=Fields(args), r=Fields(result if isinstance(result, Mapping) else {"value": result}))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            pass
    return "Here is the result of " + summarize(name, result)


class Fields(dict):
    """Mapping for ``str.format`` whose values print the way ``value_text`` writes them."""

    def __init__(self, data: Mapping[str, Any]):
        super().__init__({k: _Text(v) for k, v in data.items()})


class _Text:
    def __init__(self, value: Any):
        self.value = value

    def __getitem__(self, key: Any) -> _Text:
        return _Text(self.value[int(key) if isinstance(self.value, list) else key])

    def __format__(self, spec: str) -> str:
        return format(self.value, spec) if spec else _short(self.value)
