"""BFCL's executable multi-turn backends, loaded by file path and owned per episode.

The backend modules (file system, trading bot, travel booking, ...) are plain Python classes shipped in the
``bfcl-eval`` wheel. They are loaded with ``spec_from_file_location`` under a private module name, so the
``bfcl_eval`` package is never imported. Most of them import their one sibling, ``long_context``, by its
``bfcl_eval.…`` dotted name: that file is loaded by path too and registered under the dotted name only while
the backend module executes. A backend whose third-party import is missing (``MathAPI`` needs ``mpmath``)
raises ``BackendUnavailable`` naming the package to install.

``BackendSession`` holds one instance per involved class for one episode (BFCL keeps them in module globals
keyed by model and test id, where a stale instance leaks into the next attempt). Calls are dispatched by name
to public bound methods with parsed arguments; nothing is ``eval``-ed.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from envs.bfcl.data import backend_dir

#: backend class -> module file in ``func_source_code``
MODULE_FILES = {
    "GorillaFileSystem": "gorilla_file_system.py",
    "MathAPI": "math_api.py",
    "MessageAPI": "message_api.py",
    "TwitterAPI": "posting_api.py",
    "TicketAPI": "ticket_api.py",
    "TradingBot": "trading_bot.py",
    "TravelAPI": "travel_booking.py",
    "VehicleControlAPI": "vehicle_control.py",
}
#: classes built without a scenario (BFCL's STATELESS_CLASSES)
STATELESS = frozenset({"MathAPI"})
_PRIVATE = "chordgym_bfcl_backends"
_SIBLINGS = {"bfcl_eval.eval_checker.multi_turn_eval.func_source_code.long_context": "long_context.py"}


class BackendUnavailable(RuntimeError):
    """A BFCL backend cannot be loaded here (a dependency of its module is missing)."""


def _exec_file(filename: str) -> ModuleType:
    path = backend_dir() / filename
    name = f"{_PRIVATE}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BackendUnavailable(f"cannot load BFCL backend file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # some stdlib helpers look a class's module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@functools.cache
def _sibling(filename: str) -> ModuleType:
    return _exec_file(filename)


@functools.cache
def backend_class(class_name: str) -> type:
    """The backend class ``class_name``, loaded once per process from BFCL's source file."""
    if class_name not in MODULE_FILES:
        raise BackendUnavailable(f"unknown BFCL backend class {class_name!r}; known: {', '.join(MODULE_FILES)}")
    inserted = []
    for dotted, filename in _SIBLINGS.items():
        if dotted not in sys.modules:
            sys.modules[dotted] = _sibling(filename)
            inserted.append(dotted)
    try:
        module = _exec_file(MODULE_FILES[class_name])
    except ModuleNotFoundError as e:
        raise BackendUnavailable(
            f"BFCL backend {class_name} ({MODULE_FILES[class_name]}) needs the Python package {e.name!r}, "
            f"which is not installed: `pip install {e.name}`"
        ) from e
    finally:
        for dotted in inserted:
            sys.modules.pop(dotted, None)
    return getattr(module, class_name)


def unavailable_reason(class_names: list[str]) -> str | None:
    """None when every class loads, else the first ``BackendUnavailable`` message."""
    for name in class_names:
        try:
            backend_class(name)
        except BackendUnavailable as e:
            return str(e)
    return None


def result_text(value: Any) -> str:
    """BFCL's string form of a call's return value (what its response check compares)."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


@dataclass(frozen=True)
class Execution:
    """One executed call: ``value`` (the return value) or ``error``, and BFCL's result ``text``.

    ``text`` is taken when the call returns: backends return live references to their state (a dict that a
    later call mutates), and BFCL stringifies at call time.
    """

    name: str
    value: Any = None
    error: str | None = None
    text: str = ""

    @classmethod
    def returned(cls, name: str, value: Any) -> Execution:
        return cls(name, value=copy.deepcopy(value), text=result_text(value))

    @classmethod
    def failed(cls, name: str, error: str) -> Execution:
        return cls(name, error=error, text=f"Error during execution: {error}")

    def as_tool_result(self) -> dict[str, Any]:
        """The entry of a chordgym tool message: ``{"name", "results"}`` or ``{"name", "error"}``."""
        if self.error is not None:
            return {"name": self.name, "error": self.error}
        return {"name": self.name, "results": self.value}


class BackendSession:
    """The backend instances of one episode and a name -> public method table over them.

    Built as BFCL builds them: no-argument constructor, then ``_load_scenario(deepcopy(config),
    long_context=...)`` for stateful classes; a method name defined by two classes resolves to the later one.
    """

    def __init__(self, class_names: list[str], initial_config: dict[str, Any], long_context: bool = False):
        self.instances: dict[str, Any] = {}
        self._methods: dict[str, Callable[..., Any]] = {}
        for class_name in class_names:
            instance = backend_class(class_name)()
            if class_name not in STATELESS:
                instance._load_scenario(copy.deepcopy(initial_config.get(class_name, {})), long_context=long_context)
            self.instances[class_name] = instance
            for method_name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self._methods[method_name] = method

    def resolve(self, name: str) -> Callable[..., Any] | None:
        """The public bound method called ``name``; None for unknown, dotted or private names."""
        if not name or name.startswith("_") or "." in name:
            return None
        return self._methods.get(name)

    def execute(self, name: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Execution:
        """Call ``name`` with already-parsed arguments; every failure becomes an ``Execution`` with ``error``."""
        method = self.resolve(name)
        if method is None:
            return Execution.failed(name, f"name '{name}' is not defined")
        try:
            value = method(*args, **(kwargs or {}))
        except Exception as e:  # a backend raising is a failed call, as in BFCL
            return Execution.failed(name, str(e))
        return Execution.returned(name, value)

    def state(self, class_name: str) -> dict[str, Any]:
        """Public attributes of one instance (what BFCL's state check compares)."""
        return {k: v for k, v in vars(self.instances[class_name]).items() if not k.startswith("_")}


def state_differences(model: BackendSession, reference: BackendSession) -> dict[str, list[str]]:
    """``{class: [attribute, ...]}`` where the model's public attributes differ from the reference's.

    Every public attribute of the reference instance is compared with ``!=`` (BFCL's ``_compare_instances``).
    """
    out: dict[str, list[str]] = {}
    for class_name, ref_instance in reference.instances.items():
        mine = model.instances[class_name]
        diffs = [attr for attr in vars(ref_instance)
                 if not attr.startswith("_") and getattr(mine, attr, _MISSING) != getattr(ref_instance, attr)]
        if diffs:
            out[class_name] = diffs
    return out


_MISSING = object()
