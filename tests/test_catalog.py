"""The API catalog: size, domains, parameter-type coverage, determinism and per-world state."""

from __future__ import annotations

import keyword

from tools import ToolCall, Toolset
from tools.catalog import DOMAINS, TOOL_DOMAIN, World, build_catalog


def _types(schema: dict) -> set[str]:
    out = set()
    t = schema.get("type")
    out.update(t if isinstance(t, list) else [t] if t else [])
    if "enum" in schema:
        out.add("enum")
    for sub in schema.get("properties", {}).values():
        out |= _types(sub)
    if isinstance(schema.get("items"), dict):
        out |= _types(schema["items"])
    return out


def test_size_and_domains():
    assert len(DOMAINS) >= 12
    assert len(TOOL_DOMAIN) >= 80
    assert all(len(names) >= 5 for names in DOMAINS.values())
    catalog = build_catalog(World(0))
    assert isinstance(catalog, Toolset) and len(catalog) == len(TOOL_DOMAIN)


def test_names_are_identifiers_with_descriptions():
    for tool in build_catalog(World(0)):
        assert tool.name.isidentifier() and not keyword.iskeyword(tool.name) and tool.name == tool.name.lower()
        assert len(tool.description) > 15
        for name, prop in tool.parameters["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"


def test_parameter_types_covered():
    seen, required, optional_with_default = set(), 0, 0
    for tool in build_catalog(World(0)):
        params = tool.parameters
        for name, prop in params["properties"].items():
            seen |= _types(prop)
            if name in params.get("required", []):
                required += 1
            elif "default" in prop:
                optional_with_default += 1
    assert {"string", "integer", "number", "boolean", "enum", "array", "object"} <= seen
    assert required > 100 and optional_with_default > 60


def test_object_parameter_has_named_keys():
    checkout = build_catalog(World(0))["checkout"].parameters["properties"]["shipping_address"]
    assert checkout["type"] == "object" and set(checkout["required"]) == {"street", "city", "postal_code"}


def test_results_are_deterministic_per_seed():
    call = ToolCall("get_daily_forecast", {"city": "Lisbon", "days": 3})
    a = build_catalog(World(5)).execute(call)
    b = build_catalog(World(5)).execute(call)
    c = build_catalog(World(6)).execute(call)
    assert a.ok and a.content == b.content and a.content != c.content


def test_stateful_tools_share_one_world_only():
    world = World(1)
    ts = build_catalog(world)
    made = ts.execute(ToolCall("create_event", {"title": "Demo", "date": "2025-07-01", "start_time": "10:00"}))
    assert made.ok and made.content["event_id"] == "EVT-1001"
    listed = ts.execute(ToolCall("list_calendar_events", {"date": "2025-07-01"}))
    assert [e["title"] for e in listed.content["events"]] == ["Demo"]
    fresh = build_catalog(World(1)).execute(ToolCall("list_calendar_events", {"date": "2025-07-01"}))
    assert fresh.content["events"] == []


def test_bad_calls_become_error_results():
    ts = build_catalog(World(0))
    assert "unknown city" in ts.execute(ToolCall("get_weather_now", {"city": "Atlantis"})).error
    assert ts.execute(ToolCall("get_weather_now", {"city": 3})).error
    assert ts.execute(ToolCall("get_weather_now", {"city": "Oslo", "unit": "kelvin"})).error
    assert ts.execute(ToolCall("create_event", {"title": "x", "date": "tomorrow", "start_time": "10:00"})).error


def test_every_domain_tool_runs_in_subset():
    world = World(3)
    for domain, names in DOMAINS.items():
        ts = build_catalog(world, names)
        assert ts.names == list(names), domain
