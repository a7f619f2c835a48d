"""A tool: a name, a description, a JSON schema for its arguments and the Python callable behind it.

``Tool`` keeps ``parameters`` in OpenAI's JSON-schema form (``{"type": "object", "properties": ...,
"required": [...]}``). BFCL/ToolACE write schemas in their own dialect (``"type": "dict"``, ``"float"``,
``"tuple"``, ``"any"``); ``normalize_schema`` maps it to JSON schema so one validator serves both, and
``Tool.toolace_schema`` maps it back for prompts in that dialect.

``@tool`` builds a ``Tool`` from a function's type hints and Google-style docstring. It does not use
``transformers.utils.get_json_schema``: calling that imports torch (~1.3 s, and ``tools`` must stay
torch-free), it writes ``Optional`` as OpenAPI's ``"nullable"`` (which JSON-schema validators ignore, so
``None`` would be rejected), it drops defaults, and it refuses functions with an undocumented argument.

Validation (``Tool.validate``) uses ``jsonschema`` (Draft 2020-12). Unknown top-level parameters are
rejected unless the schema sets ``additionalProperties`` itself; nested objects keep their own rules.
Every problem becomes one short sentence naming the tool, the parameter and what is wrong, e.g.
``get_weather: missing required parameter 'city'``, because the text goes back to the model.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import enum
import functools
import importlib
import inspect
import json
import keyword
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jsonschema

__all__ = ["Tool", "tool", "normalize_schema", "schema_from_function", "parse_google_docstring", "json_type_name"]

#: A tool name: a Python identifier, optionally dotted for namespaces (``math.factorial``).
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_call_name(name: Any) -> bool:
    """Can ``name`` be written and parsed as a call's callee: ``NAME_RE`` and none of its dotted parts a
    Python keyword."""
    return isinstance(name, str) and bool(NAME_RE.match(name)) and not any(
        keyword.iskeyword(part) for part in name.split("."))


# BFCL/ToolACE type names (and a few Python spellings seen in the wild) -> JSON-schema type names.
_DIALECT_TYPES: dict[str, str | None] = {
    "dict": "object", "object": "object",
    "float": "number", "number": "number", "double": "number",
    "integer": "integer", "int": "integer",
    "string": "string", "str": "string",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "tuple": "array",
    "null": "null",
    "any": None,  # no type constraint
}
# JSON-schema type names -> the ToolACE/BFCL dialect.
_TOOLACE_TYPES = {"object": "dict", "number": "float"}
# Keywords whose value is a single subschema / a list of subschemas / a mapping of subschemas.
_SUB_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "additionalItems")
_SUB_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions")

_MAX_ERRORS = 5  # validation problems reported per call


# -- the BFCL/ToolACE dialect ---------------------------------------------------------------------------

def normalize_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``schema`` with BFCL/ToolACE type names mapped to JSON schema.

    ``dict -> object``, ``float -> number``, ``tuple -> array``, ``any ->`` no ``type`` key (and ``int``,
    ``str``, ``bool``, ``list`` the same way). An unknown type name raises ``ValueError``: a schema that
    cannot be enforced should fail when the tool is defined, not silently pass every call.
    """
    if not isinstance(schema, Mapping):
        raise ValueError(f"a JSON schema must be a dict, got {type(schema).__name__}")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            mapped = _map_type(value)
            if mapped is not None:
                out["type"] = mapped
        elif key in _SUB_ONE and isinstance(value, Mapping):
            out[key] = normalize_schema(value)
        elif key in _SUB_LIST and isinstance(value, list):
            out[key] = [normalize_schema(v) if isinstance(v, Mapping) else v for v in value]
        elif key in _SUB_MAP and isinstance(value, Mapping):
            out[key] = {k: normalize_schema(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _map_type(value: Any) -> str | list[str] | None:
    if isinstance(value, list):
        mapped = [_map_type(v) for v in value]
        if any(m is None for m in mapped):  # "any" in a union: no constraint at all
            return None
        return list(dict.fromkeys(mapped))  # type: ignore[arg-type]
    if not isinstance(value, str) or value.lower() not in _DIALECT_TYPES:
        known = ", ".join(sorted(_DIALECT_TYPES))
        raise ValueError(f"unknown schema type {value!r}; known types: {known}")
    return _DIALECT_TYPES[value.lower()]


def _to_toolace(schema: Mapping[str, Any], is_property: bool = False) -> dict[str, Any]:
    """JSON schema -> ToolACE/BFCL dialect: object -> dict, number -> float, untyped property -> any."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if isinstance(value, list):  # the dialect has no unions: keep the first non-null type
                non_null = [v for v in value if v != "null"] or ["null"]
                value = non_null[0]
            out["type"] = _TOOLACE_TYPES.get(value, value)
        elif key in _SUB_ONE and isinstance(value, Mapping):
            out[key] = _to_toolace(value, is_property=key == "items")
        elif key in _SUB_LIST and isinstance(value, list):
            out[key] = [_to_toolace(v) if isinstance(v, Mapping) else v for v in value]
        elif key in ("properties", "patternProperties") and isinstance(value, Mapping):
            out[key] = {k: _to_toolace(v, is_property=True) if isinstance(v, Mapping) else v
                        for k, v in value.items()}
        else:
            out[key] = copy.deepcopy(value)
    if is_property and "type" not in out and not any(k in out for k in ("anyOf", "oneOf", "allOf", "enum")):
        out = {"type": "any", **out}
    return out


# -- the Tool ------------------------------------------------------------------------------------------

def _check_name(name: Any) -> None:
    if not is_call_name(name):
        raise ValueError(f"tool name {name!r} must be a Python identifier that is not a keyword "
                         f"(dots allowed for namespaces), so that calls to it can be written and parsed")


@dataclasses.dataclass(frozen=True, eq=False)
class Tool:
    """A callable the model may use, described by a JSON schema.

    ``fn`` may be ``None`` for a tool that only has a description here and runs elsewhere (an HTTP tool
    server). ``parameters`` is normalised on construction (see ``normalize_schema``) and checked to be a
    valid JSON schema of ``"type": "object"``; a bad name or schema raises ``ValueError`` at once.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] | None = None
    _validator: Any = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.description, str):
            raise ValueError(f"tool {self.name}: description must be a string")
        params = normalize_schema(self.parameters if self.parameters else {"type": "object", "properties": {}})
        if params.get("type") != "object":
            raise ValueError(f"tool {self.name}: parameters must be a schema of type 'object' (or 'dict'), "
                             f"got {params.get('type')!r}")
        params.setdefault("properties", {})
        check = dict(params)
        check.setdefault("additionalProperties", False)
        problem = _schema_problem(json.dumps(check, sort_keys=True, default=repr))
        if problem is not None:
            raise ValueError(f"tool {self.name}: invalid parameter schema: {problem}")
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "_validator", jsonschema.Draft202012Validator(check))

    def bind(self, fn: Callable[..., Any] | None) -> Tool:
        """A copy of this tool that calls ``fn``: same schema, without re-checking it (the costly part)."""
        new = copy.copy(self)
        object.__setattr__(new, "fn", fn)
        return new

    def renamed(self, name: str) -> Tool:
        """A copy of this tool under another name: same schema, function and compiled validator."""
        _check_name(name)
        new = copy.copy(self)
        object.__setattr__(new, "name", name)
        return new

    def __copy__(self) -> Tool:
        new = object.__new__(Tool)
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Tool:
        new = self.__copy__()  # the function is shared, not copied (it may be a bound method of a backend)
        object.__setattr__(new, "parameters", copy.deepcopy(self.parameters, memo))
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by reference when ``@tool`` replaced a module-level function with this Tool (pickle
        # cannot find the function under its own name then), else rebuild from the fields; the
        # compiled validator is never pickled.
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        if module and "<locals>" not in qualname and _resolve(module, qualname) is self:
            return _resolve, (module, qualname)
        return Tool, (self.name, self.description, self.parameters, self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no limits)."""
        if self.fn is None:
            raise TypeError(f"tool {self.name} has no local function")
        return self.fn(*args, **kwargs)

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    def openai_schema(self) -> dict[str, Any]:
        """``{"type": "function", "function": {"name", "description", "parameters"}}``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": copy.deepcopy(self.parameters)}}

    def toolace_schema(self) -> dict[str, Any]:
        """``{"name", "description", "parameters": {"type": "dict", ...}}``: the ToolACE/BFCL dialect."""
        return {"name": self.name, "description": self.description,
                "parameters": _to_toolace(self.parameters)}

    def validate(self, arguments: Any) -> str | None:
        """Check ``arguments`` against the schema; ``None`` if valid, else the problems as one sentence."""
        if not isinstance(arguments, Mapping):
            return f"{self.name}: arguments must be an object of name=value pairs, got {type(arguments).__name__}"
        try:
            errors = list(self._validator.iter_errors(dict(arguments)))
        except RecursionError:
            return f"{self.name}: arguments are nested too deeply"
        if not errors:
            return None
        errors.sort(key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)))
        texts = list(dict.fromkeys(_describe(e, self.parameters) for e in errors))
        more = f" (and {len(texts) - _MAX_ERRORS} more)" if len(texts) > _MAX_ERRORS else ""
        return f"{self.name}: " + "; ".join(texts[:_MAX_ERRORS]) + more


@functools.lru_cache(maxsize=4096)
def _schema_problem(schema_json: str) -> str | None:
    """Check a schema against the metaschema (~2 ms, hence cached by its canonical JSON text)."""
    try:
        jsonschema.Draft202012Validator.check_schema(json.loads(schema_json))
    except jsonschema.SchemaError as e:
        return e.message
    return None


def _resolve(module: str, qualname: str) -> Any:
    """The object named ``qualname`` in ``module`` (imported if needed), or ``None``."""
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def _short(value: Any, limit: int = 60) -> str:
    """At most ``limit`` characters of ``value`` for an error message; never raises (error messages are
    built from model output, which may nest thousands of levels deep)."""
    try:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    except RecursionError:  # from either: both walk the value recursively
        text = f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_JSON_TYPE_STYLES = ("schema", "prose", "decoded")
_PROSE_TYPE_NAMES = {"null": "null", "boolean": "a boolean", "integer": "a number", "number": "a number",
                     "string": "a string", "array": "an array", "object": "an object"}


def json_type_name(value: Any, *, style: Literal["schema", "prose", "decoded"] = "schema") -> str:
    """The JSON type of a Python value, worded for an error message. ``bool`` is never reported as an
    integer or a number (it subclasses ``int``), and a value of no JSON type is named by its Python type
    (``set``, ``bytes``, a class name).

    ``style`` picks the wording:

    - ``"schema"`` (the default): JSON schema's type keywords, ``null``, ``boolean``, ``integer``,
      ``number``, ``string``, ``array``, ``object``, as ``Tool.validate`` names a wrong argument
      (``must be of type string, got integer 3``). A tuple counts as an array and any ``Mapping`` as an
      object.
    - ``"prose"``: with an article, ints and floats both ``a number``: ``null``, ``a boolean``,
      ``a number``, ``a string``, ``an array``, ``an object``, as the data loaders name a bad field
      (``must be a string, got a number``). Only a ``list`` is an array and only a ``dict`` an object, so
      a tuple given where a list is required is named ``tuple``, not ``an array``.
    - ``"decoded"``: for a value just decoded from JSON text, as the call parsers name what they found:
      ``a JSON object``, ``a JSON array``, ``a JSON string``, ``a JSON number``, and
      ``the JSON constant null`` / ``true`` / ``false``. Containers as in ``"prose"``.
    """
    if style not in _JSON_TYPE_STYLES:
        raise ValueError(f"style must be one of {', '.join(_JSON_TYPE_STYLES)}, got {style!r}")
    loose_containers = style == "schema"
    if value is None:
        name = "null"
    elif isinstance(value, bool):
        name = "boolean"
    elif isinstance(value, int):
        name = "integer"
    elif isinstance(value, float):
        name = "number"
    elif isinstance(value, str):
        name = "string"
    elif isinstance(value, list) or (loose_containers and isinstance(value, tuple)):
        name = "array"
    elif isinstance(value, dict) or (loose_containers and isinstance(value, Mapping)):
        name = "object"
    else:
        return type(value).__name__
    if style == "schema":
        return name
    if style == "prose":
        return _PROSE_TYPE_NAMES[name]
    if name in ("null", "boolean"):
        return f"the JSON constant {json.dumps(value)}"
    return f"a JSON {'number' if name == 'integer' else name}"


def _where(path: list[Any]) -> str:
    """``['loc', 'city']`` -> ``'loc.city'``; ``['ids', 0]`` -> ``'ids[0]'``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> str:
    path = list(error.absolute_path)
    top = not path
    subject = f"parameter '{_where(path)}'" if path else "arguments"
    kind = error.validator
    instance = error.instance
    if kind == "required" and isinstance(instance, Mapping):
        missing = [r for r in error.validator_value if r not in instance]
        names = ", ".join(f"'{m}'" for m in missing)
        word = "parameter" if top else f"key in {subject}:"
        return f"missing required {word}{'s' if len(missing) > 1 and top else ''} {names}"
    if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, Mapping):
        props = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in instance if k not in props and not any(re.search(p, k) for p in patterns)]
        names = ", ".join(f"'{k}'" for k in extra)
        expected = ", ".join(props) or "none"
        if top:
            return f"unknown parameter{'s' if len(extra) > 1 else ''} {names} (expected: {expected})"
        return f"unknown key{'s' if len(extra) > 1 else ''} {names} in {subject} (expected: {expected})"
    if kind == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{subject} must be of type {want}, got {json_type_name(instance)} {_short(instance)}"
    if kind == "enum":
        allowed = ", ".join(_short(v) for v in error.validator_value)
        return f"{subject} must be one of [{allowed}], got {_short(instance)}"
    if kind == "const":
        return f"{subject} must be {_short(error.validator_value)}, got {_short(instance)}"
    return f"{subject}: {error.message}"


# -- building a Tool from a Python function -------------------------------------------------------------

_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?|"
                         r"Attributes|Keyword Args|Keyword Arguments|Other Parameters|See Also|Todo|"
                         r"Warnings?):\s*$")
_ARG_RE = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parse_google_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description}).

    The description is everything before the first section header; argument entries are
    ``name: text`` or ``name (type): text`` lines under ``Args:``, continued on more-indented lines.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in lines:
        header = _SECTION_RE.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if header:
            section = header.group(1).lower()
            current, arg_indent = None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in ("args", "arguments", "parameters", "params", "keyword args", "keyword arguments"):
            continue
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_RE.match(line.strip())
        if match and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = match.group(1)
            args[current] = match.group(3).strip()
        elif current is not None:
            args[current] = (args[current] + " " + line.strip()).strip()
    return "\n".join(description).strip(), args


def _type_schema(hint: Any, where: str) -> dict[str, Any]:
    """JSON schema of one Python type hint."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object:
        return {}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _type_schema(args[0], where)
    if hint is type(None) or hint is None:
        return {"type": "null"}
    if origin is typing.Literal:
        values = [v.value if isinstance(v, enum.Enum) else v for v in args]
        kinds = {json_type_name(v) for v in values}
        schema: dict[str, Any] = {"enum": values}
        if len(kinds) == 1:
            return {"type": kinds.pop(), **schema}
        return schema
    if origin in (typing.Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        nullable = len(non_null) < len(args)
        if len(non_null) == 1:
            inner = _type_schema(non_null[0], where)
            return _nullable(inner) if nullable else inner
        subs = [_type_schema(a, where) for a in non_null]
        if all(set(s) == {"type"} and isinstance(s["type"], str) for s in subs):
            merged = list(dict.fromkeys(s["type"] for s in subs)) + (["null"] if nullable else [])
            return {"type": merged}
        return {"anyOf": subs + ([{"type": "null"}] if nullable else [])}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _type_schema(typing.Literal[tuple(m.value for m in hint)], where)  # type: ignore[misc]
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if hint in simple:
        return {"type": simple[hint]}
    base = origin or hint
    if base in (list, set, frozenset, collections.abc.Sequence):
        return {"type": "array", **({"items": _type_schema(args[0], where)} if args else {})}
    if base is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", **({"items": _type_schema(args[0], where)} if args else {})}
        return {"type": "array", "prefixItems": [_type_schema(a, where) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if base in (dict, collections.abc.Mapping):
        schema = {"type": "object"}
        if len(args) == 2 and _type_schema(args[1], where):
            schema["additionalProperties"] = _type_schema(args[1], where)
        return schema
    raise TypeError(f"{where}: cannot express type hint {hint!r} in JSON schema")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema:
        return schema
    out = dict(schema)
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def schema_from_function(fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """(description, parameters schema) of ``fn`` from its type hints and Google-style docstring.

    Parameters without a default are required; a JSON-serialisable default is recorded as ``"default"``.
    ``*args``/``**kwargs`` and positional-only parameters are refused (tools are called with keywords),
    as is a documented argument that the signature lacks (a typo would silently lose its description).
    """
    where = getattr(fn, "__qualname__", repr(fn))
    description, arg_docs = parse_google_docstring(inspect.getdoc(fn))
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # unresolvable forward references
        raise TypeError(f"{where}: cannot resolve type hints: {e}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"{where}: parameter {name!r} must be an ordinary keyword-capable parameter")
        schema = _type_schema(hints.get(name, inspect.Parameter.empty), f"{where}({name})")
        if name in arg_docs and arg_docs[name]:
            schema["description"] = arg_docs[name]
        if param.default is param.empty:
            required.append(name)
        else:
            default = param.default.value if isinstance(param.default, enum.Enum) else param.default
            try:
                json.dumps(default)
                schema["default"] = default
            except (TypeError, ValueError):
                pass
        properties[name] = schema
    unknown = set(arg_docs) - set(properties)
    if unknown:
        raise TypeError(f"{where}: docstring documents unknown argument(s) {sorted(unknown)}")
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return description, parameters


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Decorator: turn a function into a ``Tool`` (usable bare, ``@tool``, or as ``@tool(name=...)``).

    The schema comes from the type hints and the Google-style docstring; ``name`` and ``description``
    override the function's name and docstring summary. The result is still callable like the function.
    """
    def build(f: Callable[..., Any]) -> Tool:
        desc, params = schema_from_function(f)
        return Tool(name=name or f.__name__, description=description if description is not None else desc,
                    parameters=params, fn=f)

    return build(fn) if fn is not None else build
