"""Tool-calling data that users bring: their own files, read into one normalised shape.

``envs.toolcalls.data`` reads JSONL (or a JSON array, plain or gzipped) in the OpenAI messages+tools format,
the ToolACE release format or the Tool-N1/Trinity-RFT splits the CHORD paper trained on, one record at a
time, into ``ToolCallSample`` (OpenAI function tools and chat messages, call arguments always a dict).

The names below are imported from ``envs.toolcalls.data`` on first use, so that
``python -m envs.toolcalls.data`` runs that module once, as ``__main__``, not a second copy of it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FORMATS", "DataFormatError", "LoadReport", "ToolCallSample", "detect_format", "iter_samples",
           "load_samples"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("envs.toolcalls.data"), name)
    raise AttributeError(f"module 'envs.toolcalls' has no attribute {name!r}")
