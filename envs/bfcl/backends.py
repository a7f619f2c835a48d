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

Bounds (a model writes the arguments, so no call may run long, print huge or leave state behind):

* BFCL's ``MathAPI`` is pure CPU work on unbounded numbers (``power(base=7, exponent=10**1000)`` never ends,
  ``square_root(precision=3000000)`` takes 24 s and prints 3 MB): its arguments are checked before the call
  (``MAX_PRECISION``, ``MAX_NUMERIC_STRING_CHARS``, ``MAX_DECIMAL_PLACES``, ``MAX_POWER_BITS``) and an
  out-of-bounds call returns ``{"error": ...}``, as the math API reports bad input itself.
  ``GorillaFileSystem.find`` / ``du`` walk a tree that ``cp`` can make exponentially large (or cyclic): the walk
  is measured first (``MAX_TREE_NODES``). Input bounds are the defence: a Python thread cannot be stopped, and
  big-integer arithmetic does not even release the interpreter while it runs.
* Every exception a call raises is a failed call (``Error during execution: ...``), never an escape.
* Process-wide numeric state a backend sets (``mpmath.mp.dps`` in ``logarithm``, the ``decimal`` context's
  precision in ``square_root``) is restored after each call; a result's text is taken inside that context,
  so ``logarithm``'s digits are those of the precision it asked for, as in BFCL.
* A result shown to the model is cut at ``max_result_chars`` characters and one tool message at
  ``MESSAGE_RESULTS`` results' worth (``tool_message``); the text the response check compares is not cut.
"""

from __future__ import annotations

import contextlib
import copy
import decimal
import functools
import importlib.util
import inspect
import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from envs.bfcl.data import backend_dir
from envs.bfcl.decode import MAX_INT_BITS

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

#: characters of one call's result shown to the model. BFCL's longest result outside long_context is 592
#: characters (ground-truth replay of base / miss_func / miss_param), so 4,096 cuts nothing BFCL means the model
#: to read, while one reply can no longer fill the context with megabytes (mpmath's error message alone
#: repeats a 30,000-digit argument).
MAX_RESULT_CHARS = 4_096
#: the same for long_context entries, whose backends return long listings on purpose (longest: 31,745).
MAX_RESULT_CHARS_LONG_CONTEXT = 65_536
#: one tool message holds at most this many results' worth of characters (``max_result_chars`` each); later
#: results are replaced by a short note. Longest ground-truth message: 850 characters, 70,547 in long_context.
MESSAGE_RESULTS = 4
#: ``MathAPI.logarithm`` / ``square_root``: largest ``precision`` (digits); BFCL's ground truth uses <= 10.
#: At 100 digits the slowest call (a complex logarithm of numeric strings at ``MAX_NUMERIC_STRING_CHARS``) takes
#: ~0.5 ms; a complex logarithm at 500 digits takes ~1.5 ms, at 1,000 several ms.
MAX_PRECISION = 100
#: ``MathAPI.logarithm``: longest numeric string for ``value`` / ``base`` (mpmath parses strings itself, and its time
#: grows with the cube of a decimal exponent's digits: ``'1e' + '9' * 4000`` takes 40 s); ``repr`` of any float fits.
MAX_NUMERIC_STRING_CHARS = 24
#: ``MathAPI.round_number``: largest ``|decimal_places|`` (``round(n, -10**9)`` computes ``10**10**9``).
MAX_DECIMAL_PLACES = 1_000
#: ``MathAPI.power`` on integers: largest result, in bits (the decoder's own integer bound; about 1,233 digits).
MAX_POWER_BITS = MAX_INT_BITS
#: ``GorillaFileSystem.find`` / ``du``: most entries their recursive walk may visit. ``cp`` of a directory
#: shares its children (a shallow ``dict.copy``), so four calls per level build a tree whose walk doubles with
#: every level (22 levels: ``du`` takes 8 s), and copying a directory into itself makes a cycle. BFCL's largest
#: scenario tree has 125 entries.
MAX_TREE_NODES = 10_000


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


def _magnitude(x: Any) -> float | None:
    """``|x|`` as a float (``inf`` when too large) for numbers and numeric strings; None for anything else."""
    if isinstance(x, int | float):
        try:
            return abs(float(x))
        except OverflowError:
            return math.inf
    if isinstance(x, str):
        try:
            return abs(float(x))
        except ValueError:
            return None
    return None


def _above(x: Any, limit: float) -> bool:
    """True when ``x`` is a number (or a numeric string) whose magnitude exceeds ``limit``, or is NaN."""
    m = _magnitude(x)
    return m is not None and not m <= limit


def _check_precision(_instance: Any, args: dict[str, Any]) -> str | None:
    if _above(args.get("precision"), MAX_PRECISION):
        return f"precision must be at most {MAX_PRECISION} digits"
    return None


def _check_logarithm(instance: Any, args: dict[str, Any]) -> str | None:
    for name in ("value", "base"):
        if isinstance(args.get(name), str) and len(args[name]) > MAX_NUMERIC_STRING_CHARS:
            return f"{name} must be a number (a numeric string of at most {MAX_NUMERIC_STRING_CHARS} characters)"
    return _check_precision(instance, args)


def _check_power(_instance: Any, args: dict[str, Any]) -> str | None:
    base, exponent = args.get("base"), args.get("exponent")
    if (isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
            and exponent * (abs(base).bit_length() - 1) > MAX_POWER_BITS):
        return f"result too large: base ** exponent would have more than {MAX_POWER_BITS} bits"
    return None


def _check_round(_instance: Any, args: dict[str, Any]) -> str | None:
    if _above(args.get("decimal_places"), MAX_DECIMAL_PLACES):
        return f"decimal_places must be between -{MAX_DECIMAL_PLACES} and {MAX_DECIMAL_PLACES}"
    return None


def _walk_exceeds(directory: Any, budget: int) -> bool:
    """True when a recursive walk of ``directory`` as ``find`` / ``du`` do it (an entry reached along two paths
    counted twice) would visit more than ``budget`` entries, or would never end (a directory inside itself).

    Computed without that walk: each directory object's count is memoised, so the cost is linear in the
    distinct objects even when the walk itself would be exponential.
    """
    counts: dict[int, int] = {}
    open_dirs: set[int] = set()
    stack: list[tuple[Any, bool]] = [(directory, False)]
    while stack:
        node, closing = stack.pop()
        contents = getattr(node, "contents", None)
        if not isinstance(contents, dict):
            continue  # a file counts 1 in its directory's total
        key = id(node)
        if closing:
            open_dirs.discard(key)
            counts[key] = 1 + sum(counts.get(id(child), 1) for child in contents.values())
            if counts[key] > budget:
                return True
        elif key in open_dirs:
            return True  # reached from one of its own descendants: a cycle
        elif key not in counts:
            open_dirs.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in contents.values() if id(child) not in counts)
    return False


def _check_tree(tool: str) -> Callable[[Any, dict[str, Any]], str | None]:
    def check(instance: Any, args: dict[str, Any]) -> str | None:
        try:  # the directory the call will walk; a path it cannot reach is the call's own error
            target = instance._navigate_to_directory(args.get("path", ".") if tool == "find" else None)
        except Exception:  # noqa: BLE001 - e.g. a non-string path: the call itself reports it
            return None
        if not isinstance(target, dict) and _walk_exceeds(target, MAX_TREE_NODES):
            return f"{tool}: directory tree too large (more than {MAX_TREE_NODES} entries to walk)"
        return None

    return check


#: (class, method) -> check run on the instance and the bound arguments before the call; a message means the
#: call is refused (its result is ``{"error": message}``)
ARGUMENT_CHECKS: dict[tuple[str, str], Callable[[Any, dict[str, Any]], str | None]] = {
    ("MathAPI", "logarithm"): _check_logarithm,
    ("MathAPI", "square_root"): _check_precision,
    ("MathAPI", "power"): _check_power,
    ("MathAPI", "round_number"): _check_round,
    ("GorillaFileSystem", "find"): _check_tree("find"),
    ("GorillaFileSystem", "du"): _check_tree("du"),
}


@contextlib.contextmanager
def isolated_numeric_state() -> Iterator[None]:
    """Run a backend call with the process's numeric settings restored afterwards: a private copy of the
    ``decimal`` context and ``mpmath``'s working precision (``MathAPI`` sets both and never resets them)."""
    mp = getattr(sys.modules.get("mpmath"), "mp", None)
    saved_prec = mp.prec if mp is not None else None
    try:
        with decimal.localcontext():
            yield
    finally:
        if mp is not None and mp.prec != saved_prec:
            mp.prec = saved_prec


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


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f"... [cut: {len(text)} characters in all]"


def shown_result(value: Any, max_chars: int = MAX_RESULT_CHARS) -> Any:
    """The JSON-safe form of ``value`` for a tool message (``json.dumps(default=str)`` taken now), or, when that
    is longer than ``max_chars``, its first ``max_chars`` characters as a string with a note."""
    dumped = json.dumps(value, default=str)
    if len(dumped) <= max_chars:
        return json.loads(dumped)
    return _cut(dumped, max_chars)


@dataclass(frozen=True)
class Execution:
    """One executed call: ``value`` (the return value) or ``error``, BFCL's result ``text`` and ``shown``, what
    the tool message shows (JSON-safe, cut at the session's ``max_result_chars``).

    ``text`` and ``shown`` are taken when the call returns: backends return live references to their state (a
    dict that a later call mutates), and BFCL stringifies at call time.
    """

    name: str
    value: Any = None
    error: str | None = None
    text: str = ""
    shown: Any = None
    max_chars: int = MAX_RESULT_CHARS

    @classmethod
    def returned(cls, name: str, value: Any, max_chars: int = MAX_RESULT_CHARS) -> Execution:
        return cls(name, value=copy.deepcopy(value), text=result_text(value), shown=shown_result(value, max_chars),
                   max_chars=max_chars)

    @classmethod
    def failed(cls, name: str, error: str, max_chars: int = MAX_RESULT_CHARS) -> Execution:
        return cls(name, error=error, text=f"Error during execution: {error}", max_chars=max_chars)

    def as_tool_result(self) -> dict[str, Any]:
        """The entry of a chordgym tool message: ``{"name", "results"}`` or ``{"name", "error"}``."""
        if self.error is not None:
            return {"name": self.name, "error": _cut(self.error, self.max_chars)}
        return {"name": self.name, "results": self.shown}


def tool_message(executions: list[Execution], max_result_chars: int = MAX_RESULT_CHARS) -> str:
    """One tool message's content, JSON ``[{"name", "results" | "error"}, ...]``, at most about
    ``MESSAGE_RESULTS * max_result_chars`` characters: once that budget is spent, a result is replaced by a note."""
    budget = MESSAGE_RESULTS * max_result_chars
    entries = []
    for e in executions:
        entry = e.as_tool_result()
        size = len(json.dumps(entry, default=str))
        if size > budget:
            entry = {"name": _cut(e.name, 100),
                     "error": f"result not shown: this tool message is limited to {MESSAGE_RESULTS * max_result_chars}"
                              " characters"}
        else:
            budget -= size
        entries.append(entry)
    return json.dumps(entries, default=str)


class BackendSession:
    """The backend instances of one episode and a name -> public method table over them.

    Built as BFCL builds them: no-argument constructor, then ``_load_scenario(deepcopy(config),
    long_context=...)`` for stateful classes; a method name defined by two classes resolves to the later one.
    """

    def __init__(self, class_names: list[str], initial_config: dict[str, Any], long_context: bool = False):
        self.instances: dict[str, Any] = {}
        self._methods: dict[str, Callable[..., Any]] = {}
        self._owners: dict[str, str] = {}
        self.max_result_chars = MAX_RESULT_CHARS_LONG_CONTEXT if long_context else MAX_RESULT_CHARS
        for class_name in class_names:
            instance = backend_class(class_name)()
            if class_name not in STATELESS:
                instance._load_scenario(copy.deepcopy(initial_config.get(class_name, {})), long_context=long_context)
            self.instances[class_name] = instance
            for method_name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self._methods[method_name] = method
                    self._owners[method_name] = class_name

    def resolve(self, name: str) -> Callable[..., Any] | None:
        """The public bound method called ``name``; None for unknown, dotted or private names."""
        if not name or name.startswith("_") or "." in name:
            return None
        return self._methods.get(name)

    def _refusal(self, name: str, method: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> str | None:
        owner = self._owners[name]
        check = ARGUMENT_CHECKS.get((owner, name))
        if check is None:
            return None
        try:
            bound = inspect.signature(method).bind(*args, **kwargs).arguments
        except TypeError:
            return None  # the call itself fails with BFCL's TypeError message
        return check(self.instances[owner], bound)

    def execute(self, name: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Execution:
        """Call ``name`` with already-parsed arguments; every failure becomes an ``Execution`` with ``error``.

        Never raises (``Exception``): arguments out of ``ARGUMENT_CHECKS``' bounds give ``{"error": ...}``
        without running the call, an exception is a failed call, and the numeric context is restored."""
        cap = self.max_result_chars
        method = self.resolve(name)
        if method is None:
            return Execution.failed(name, f"name '{name}' is not defined", cap)
        kwargs = kwargs or {}
        try:
            refusal = self._refusal(name, method, args, kwargs)
            if refusal is not None:
                return Execution.returned(name, {"error": refusal}, cap)
            with isolated_numeric_state():
                return Execution.returned(name, method(*args, **kwargs), cap)
        except Exception as e:  # a backend raising is a failed call, as in BFCL
            try:
                message = str(e)
            except Exception:  # noqa: BLE001 - an exception whose str() fails still is a failed call
                message = type(e).__name__
            return Execution.failed(name, message, cap)

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
