"""Tool schemas: built from type hints and docstrings, the BFCL dialect, and validation messages."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Optional

import pytest

from tools import Tool, normalize_schema, tool
from tools.schema import json_type_name, parse_google_docstring


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@tool
def kitchen_sink(city: str, n: int, x: float, flag: bool, ids: list[int], mode: Literal["fast", "slow"] = "fast",
                 note: Optional[str] = None, extra: dict | None = None, scores: dict[str, float] | None = None,  # noqa: UP045
                 color: Color = Color.RED, pair: tuple[int, str] = (1, "a"), anything: Any = None) -> dict:
    """Do everything at once.

    A second paragraph that belongs to the description.

    Args:
        city: The city name.
        n (int): How many
            things, continued on a second line.
        x: A float.
        flag: A flag.
        ids: Some ids.
        mode: The mode.
        note: An optional note.
        extra: Free-form options.
        scores: Named scores.
        color: A color.
        pair: A pair.
        anything: Whatever.

    Returns:
        A dict.
    """
    return {}


def props() -> dict[str, Any]:
    return kitchen_sink.parameters["properties"]


def test_basic_types_and_required():
    p = props()
    assert p["city"] == {"type": "string", "description": "The city name."}
    assert p["n"]["type"] == "integer"
    assert p["n"]["description"] == "How many things, continued on a second line."
    assert p["x"]["type"] == "number"
    assert p["flag"]["type"] == "boolean"
    assert p["ids"]["type"] == "array" and p["ids"]["items"] == {"type": "integer"}
    assert kitchen_sink.parameters["required"] == ["city", "n", "x", "flag", "ids"]
    assert kitchen_sink.parameters["type"] == "object"


def test_literal_enum_optional_default_dict():
    p = props()
    assert p["mode"] == {"type": "string", "enum": ["fast", "slow"], "description": "The mode.", "default": "fast"}
    assert p["note"]["type"] == ["string", "null"] and p["note"]["default"] is None
    assert p["extra"]["type"] == ["object", "null"]
    assert p["scores"]["additionalProperties"] == {"type": "number"}
    assert p["color"]["enum"] == ["red", "blue"] and p["color"]["default"] == "red"
    assert p["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert "type" not in p["anything"]


def test_description_stops_at_sections():
    assert kitchen_sink.description == "Do everything at once.\n\nA second paragraph that belongs to the description."
    desc, args = parse_google_docstring("Summary.\n\nArgs:\n    a: first\n    b (int): second\n\nRaises:\n    c: no")
    assert desc == "Summary." and args == {"a": "first", "b": "second"}


def test_decorator_with_arguments_and_direct_call():
    @tool(name="math.double", description="Twice a number.")
    def double(v: Annotated[int, "meta"]) -> int:
        return 2 * v

    assert isinstance(double, Tool) and double.name == "math.double"
    assert double.description == "Twice a number."
    assert double.parameters["properties"]["v"] == {"type": "integer"}
    assert double(v=4) == 8


def test_decorator_refuses_bad_functions():
    def star(*args: int) -> None:
        """Star."""

    def typo(a: int) -> None:
        """Typo.

        Args:
            b: not a parameter
        """

    for fn in (star, typo):
        with pytest.raises(TypeError):
            tool(fn)


def test_openai_and_toolace_schemas():
    s = kitchen_sink.openai_schema()
    assert s["type"] == "function" and s["function"]["name"] == "kitchen_sink"
    assert s["function"]["parameters"] == kitchen_sink.parameters
    t = kitchen_sink.toolace_schema()
    assert set(t) == {"name", "description", "parameters"}
    assert t["parameters"]["type"] == "dict"
    assert t["parameters"]["properties"]["x"]["type"] == "float"
    assert t["parameters"]["properties"]["note"]["type"] == "string"
    assert t["parameters"]["properties"]["anything"]["type"] == "any"


BFCL = {
    "type": "dict",
    "properties": {
        "loc": {"type": "dict", "properties": {"lat": {"type": "float"}, "lon": {"type": "float"}}},
        "pt": {"type": "tuple", "items": {"type": "integer"}},
        "v": {"type": "any", "description": "anything"},
        "k": {"type": "integer", "default": 3},
    },
    "required": ["loc"],
}


def test_bfcl_dialect_is_normalised():
    n = normalize_schema(BFCL)
    assert n["type"] == "object"
    assert n["properties"]["loc"]["properties"]["lat"]["type"] == "number"
    assert n["properties"]["pt"]["type"] == "array"
    assert n["properties"]["v"] == {"description": "anything"}
    assert BFCL["type"] == "dict"  # the input is not modified
    t = Tool("geo.find", "Find.", BFCL, fn=lambda **kw: kw)
    assert t.validate({"loc": {"lat": 1, "lon": 2.5}, "v": [1, "x"], "pt": [1, 2]}) is None
    with pytest.raises(ValueError, match="unknown schema type"):
        normalize_schema({"type": "object", "properties": {"a": {"type": "HashMap"}}})


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a..b", "a-b", "class", "a.import", None])
def test_bad_names_rejected(name):
    with pytest.raises(ValueError, match="identifier"):
        Tool(name, "d", {"type": "object", "properties": {}})


def test_bad_schemas_rejected():
    with pytest.raises(ValueError, match="type 'object'"):
        Tool("f", "d", {"type": "string"})
    with pytest.raises(ValueError, match="invalid parameter schema"):
        Tool("f", "d", {"type": "object", "properties": {}, "required": "a"})


# -- validation messages -------------------------------------------------------------------------------

@tool
def get_weather(city: str, unit: Literal["c", "f"] = "c", days: list[int] | None = None) -> dict:
    """Weather.

    Args:
        city: The city.
        unit: The unit.
        days: Day offsets.
    """
    return {"city": city}


def test_valid_arguments():
    assert get_weather.validate({"city": "Paris"}) is None
    assert get_weather.validate({"city": "Paris", "unit": "f", "days": [0, 1]}) is None
    assert get_weather.validate({"city": "Paris", "days": None}) is None


def test_missing_required():
    assert get_weather.validate({}) == "get_weather: missing required parameter 'city'"


def test_unknown_parameter():
    msg = get_weather.validate({"city": "x", "town": "y"})
    assert msg.startswith("get_weather: unknown parameter 'town'") and "expected: city, unit, days" in msg


def test_wrong_type():
    assert get_weather.validate({"city": 3}) == "get_weather: parameter 'city' must be of type string, got integer 3"
    msg = get_weather.validate({"city": "x", "days": [1, "2"]})
    assert "parameter 'days[1]' must be of type integer" in msg


def test_bool_is_not_integer_and_int_is_number():
    t = Tool("f", "d", {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}})
    assert "must be of type integer, got boolean" in t.validate({"n": True})
    assert t.validate({"n": 1, "x": 2}) is None
    assert "must be of type number, got string" in t.validate({"x": "10"})


def test_json_type_name_in_each_wording():
    """The one helper behind Tool.validate's, the data loaders' and the call parsers' type names."""
    class Odd:
        pass

    values = [None, True, 3, 2.5, "s", [1], {"a": 1}, Odd(), (1,)]
    assert [json_type_name(v) for v in values] == [
        "null", "boolean", "integer", "number", "string", "array", "object", "Odd", "array"]
    assert [json_type_name(v, style="prose") for v in values] == [
        "null", "a boolean", "a number", "a number", "a string", "an array", "an object", "Odd", "tuple"]
    assert [json_type_name(v, style="decoded") for v in values] == [
        "the JSON constant null", "the JSON constant true", "a JSON number", "a JSON number", "a JSON string",
        "a JSON array", "a JSON object", "Odd", "tuple"]
    with pytest.raises(ValueError, match="style must be one of"):
        json_type_name(1, style="plain")  # type: ignore[arg-type]


def test_enum_violation():
    assert get_weather.validate({"city": "x", "unit": "k"}) == (
        'get_weather: parameter \'unit\' must be one of ["c", "f"], got "k"')


def test_several_problems_reported_together():
    msg = get_weather.validate({"unit": "k", "zzz": 1})
    assert "missing required parameter 'city'" in msg and "unknown parameter 'zzz'" in msg and "'unit'" in msg


def test_schema_may_allow_extra_parameters():
    t = Tool("f", "d", {"type": "object", "properties": {}, "additionalProperties": True})
    assert t.validate({"anything": 1}) is None


def test_arguments_must_be_a_mapping():
    assert "arguments must be an object" in get_weather.validate(["Paris"])


def test_bind_and_copies_share_the_checked_schema():
    bound = get_weather.bind(lambda **kw: "other")
    assert bound is not get_weather and bound.fn(city="x") == "other" and get_weather.fn(city="x") == {"city": "x"}
    assert bound.validate({}) == "get_weather: missing required parameter 'city'"
    import copy

    shallow, deep = copy.copy(get_weather), copy.deepcopy(get_weather)
    assert shallow is not get_weather and shallow.fn is get_weather.fn
    assert deep.parameters == get_weather.parameters and deep.parameters is not get_weather.parameters
    assert deep.validate({"city": 1}) == get_weather.validate({"city": 1})
