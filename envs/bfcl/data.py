"""BFCL data access: finds the files shipped in the ``bfcl-eval`` wheel without importing that package.

``bfcl_eval`` pins old numpy and dozens of API clients, so it is installed with ``--no-deps`` and must never
be imported: ``importlib.util.find_spec`` on a top-level package only locates it (nothing is executed), and
every file is then read as plain text. Entries and answers are cached per category; callers receive deep
copies so that an episode can never corrupt the cache.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

PACKAGE = "bfcl_eval"
FILE_PREFIX = "BFCL_v4_"
INSTALL_HINT = "pip install --no-deps bfcl-eval"

#: single-turn categories scored by the AST checker against a possible-answer file
AST_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
)
#: single-turn categories scored on whether the output contains a call at all
RELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")
#: multi-turn categories executed on BFCL's Python backends
MULTI_TURN_CATEGORIES = (
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context",
)
CATEGORIES = AST_CATEGORIES + RELEVANCE_CATEGORIES + MULTI_TURN_CATEGORIES

#: multi-turn backend class -> function-doc file under ``data/multi_turn_func_doc``
FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}


class BFCLDataMissing(RuntimeError):
    """Raised when the ``bfcl-eval`` wheel (which carries the data) is not installed."""


def is_multi_turn(category: str) -> bool:
    return category.startswith("multi_turn")


def check_category(category: str) -> str:
    """Return ``category`` if chordgym supports it, else raise ``ValueError`` listing the supported ones."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; supported: {', '.join(CATEGORIES)}")
    return category


@functools.lru_cache(maxsize=1)
def package_dir() -> Path:
    """The installed ``bfcl_eval`` directory, located with ``find_spec`` (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BFCLDataMissing(
            f"the BFCL data comes from the PyPI package 'bfcl-eval' (module {PACKAGE!r}), which is not "
            f"installed; install it WITHOUT its dependencies: `{INSTALL_HINT}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def data_dir() -> Path:
    return package_dir() / "data"


def backend_dir() -> Path:
    """Directory of BFCL's executable multi-turn backends (plain Python modules)."""
    return package_dir() / "eval_checker" / "multi_turn_eval" / "func_source_code"


def is_available() -> bool:
    """True when the ``bfcl-eval`` wheel and its data files are installed."""
    try:
        return (data_dir() / f"{FILE_PREFIX}simple_python.json").is_file()
    except BFCLDataMissing:
        return False


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise BFCLDataMissing(f"BFCL file {path} is missing; reinstall with `{INSTALL_HINT}`")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.cache
def _entries(category: str) -> tuple[dict[str, Any], ...]:
    return tuple(_read_jsonl(data_dir() / f"{FILE_PREFIX}{check_category(category)}.json"))


@functools.cache
def _answers(category: str) -> dict[str, Any]:
    rows = _read_jsonl(data_dir() / "possible_answer" / f"{FILE_PREFIX}{check_category(category)}.json")
    return {row["id"]: row["ground_truth"] for row in rows}


@functools.cache
def _func_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    if class_name not in FUNC_DOC_FILES:
        raise KeyError(f"no BFCL function docs for backend class {class_name!r}")
    return tuple(_read_jsonl(data_dir() / "multi_turn_func_doc" / FUNC_DOC_FILES[class_name]))


def load_entries(category: str) -> list[dict[str, Any]]:
    """All entries of a category, in file order: ``{"id", "question", "function"?, ...}`` (deep copies)."""
    return copy.deepcopy(list(_entries(category)))


def has_answers(category: str) -> bool:
    """Whether the category is scored against a possible-answer file (AST and multi-turn categories)."""
    return category in AST_CATEGORIES or is_multi_turn(category)


def load_answers(category: str) -> dict[str, Any]:
    """``{entry id: ground_truth}`` for a category with an answer file (deep copy)."""
    if not has_answers(check_category(category)):
        raise ValueError(f"BFCL category {category!r} has no possible-answer file")
    return copy.deepcopy(_answers(category))


def load_func_docs(class_name: str) -> list[dict[str, Any]]:
    """Function docs (BFCL schema dialect) of one multi-turn backend class (deep copies)."""
    return copy.deepcopy(list(_func_docs(class_name)))
