"""The API catalog: ~100 executable tools in 14 domains, backed by a seeded ``World``.

In the spirit of ToolACE's synthetic API pool, but every tool runs: ``build_catalog(World(seed))`` gives a
``Toolset`` whose results are a pure function of the seed and of the calls made so far (stateful tools such
as ``create_event`` then ``list_calendar_events`` see each other's effects within one world, never across worlds).

Schemas are built once per process from the functions' type hints and docstrings; a world only binds
fresh closures to them, so a new world per episode costs a fraction of a millisecond.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from tools.catalog import (
    calendar,
    files,
    finance,
    food,
    health,
    maps,
    mathtools,
    messaging,
    shopping,
    sports,
    text,
    travel,
    units,
    weather,
)
from tools.catalog.world import TODAY, World
from tools.schema import Tool, schema_from_function
from tools.toolset import Isolation, Toolset

__all__ = ["DOMAINS", "TODAY", "TOOL_DOMAIN", "World", "build_catalog", "catalog_tools", "tool_schema"]

_MODULES: tuple[ModuleType, ...] = (weather, finance, calendar, travel, shopping, units, mathtools, text, files,
                                    messaging, maps, sports, food, health)

#: domain -> tool names, in catalog order
DOMAINS: dict[str, tuple[str, ...]] = {m.DOMAIN: tuple(f.__name__ for f in m.functions(World(0))) for m in _MODULES}
#: tool name -> domain
TOOL_DOMAIN: dict[str, str] = {name: d for d, names in DOMAINS.items() for name in names}
_MODULE_OF: dict[str, ModuleType] = {m.DOMAIN: m for m in _MODULES}

#: Schema refinements that type hints cannot express (an object parameter with named, required keys).
_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "checkout": {"shipping_address": {
        "type": "object",
        "description": "Delivery address.",
        "properties": {"street": {"type": "string", "description": "Street and number."},
                       "city": {"type": "string", "description": "City."},
                       "postal_code": {"type": "string", "description": "Postal or ZIP code."},
                       "country": {"type": "string", "description": "Country.", "default": "United States"}},
        "required": ["street", "city", "postal_code"],
    }},
}

_TEMPLATES: dict[str, Tool] = {}


def _template(name: str, fn: Callable[..., Any]) -> Tool:
    """The schema-carrying ``Tool`` for ``name``, built (and validated) once per process."""
    t = _TEMPLATES.get(name)
    if t is None:
        description, parameters = schema_from_function(fn)
        for param, schema in _OVERRIDES.get(name, {}).items():
            parameters["properties"][param] = schema
        t = Tool(name=name, description=description, parameters=parameters, fn=None)
        _TEMPLATES[name] = t
    return t


def catalog_tools(world: World, names: Iterable[str] | None = None) -> list[Tool]:
    """The catalog's tools bound to ``world``: all of them, or ``names`` in that order."""
    wanted = list(names) if names is not None else list(TOOL_DOMAIN)
    unknown = [n for n in wanted if n not in TOOL_DOMAIN]
    if unknown:
        raise KeyError(f"unknown catalog tools {unknown}")
    fns: dict[str, Callable[..., Any]] = {}
    for domain in dict.fromkeys(TOOL_DOMAIN[n] for n in wanted):
        fns.update((f.__name__, f) for f in _MODULE_OF[domain].functions(world))
    return [_template(n, fns[n]).bind(fns[n]) for n in wanted]


def build_catalog(world: World, names: Iterable[str] | None = None, timeout_s: float | None = None,
                  max_output_chars: int = 4096, isolation: Isolation = "process") -> Toolset:
    """A ``Toolset`` of the catalog (or the ``names`` subset) acting on ``world``.

    ``timeout_s=None`` runs the tools inline: they are deterministic Python, and a worker process would
    only slow generation down; environments facing model output pass a limit, and ``isolation`` says where
    the calls run then (``tools.toolset``).
    """
    return Toolset(catalog_tools(world, names), timeout_s=timeout_s, max_output_chars=max_output_chars,
                   isolation=isolation)


def tool_schema(name: str) -> dict[str, Any]:
    """The JSON-schema parameters of catalog tool ``name`` (no world needed)."""
    return catalog_tools(World(0), [name])[0].parameters
