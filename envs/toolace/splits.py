"""Which tools are held out for the test split.

Two whole domains (``sports``, ``health``) and one tool from each of twelve other domains never appear
in the train or val splits, not even as distractors in a prompt. Every tool-using test task needs at
least one of them, and test no-tool tasks are built from their templates (and from chit-chat requests
that training never sees), so the test split measures generalisation to unseen APIs: the situation
the held-out BFCL evaluation puts a model in.
"""

from __future__ import annotations

from tools.catalog import DOMAINS, TOOL_DOMAIN

HELDOUT_DOMAINS: tuple[str, ...] = ("sports", "health")
HELDOUT_TOOLS: tuple[str, ...] = (
    "get_weather_alerts", "project_savings_growth", "find_free_slots", "get_visa_requirements", "apply_coupon",
    "convert_speed", "fibonacci_sequence", "make_slug", "get_file_info", "mark_messages_read", "reverse_geocode",
    "get_wine_pairing",
)
TEST_TOOLS: frozenset[str] = frozenset(HELDOUT_TOOLS) | {t for d in HELDOUT_DOMAINS for t in DOMAINS[d]}
TRAIN_TOOLS: frozenset[str] = frozenset(TOOL_DOMAIN) - TEST_TOOLS
SPLITS: tuple[str, ...] = ("train", "val", "test")


def allowed_tools(split: str) -> frozenset[str]:
    """Tools that may appear anywhere (needed or offered) in a task of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return frozenset(TOOL_DOMAIN) if split == "test" else TRAIN_TOOLS
