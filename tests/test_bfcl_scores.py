"""BFCL score aggregation and the markdown table."""

from __future__ import annotations

import pytest

from envs.bfcl.scores import aggregates, category_accuracy, markdown_table


def _records(category: str, correct: int, total: int) -> list[dict]:
    return [{"category": category, "valid": i < correct} for i in range(total)]


def test_aggregates():
    per = category_accuracy(
        _records("simple_python", 3, 4) + _records("multiple", 1, 2) + _records("parallel", 0, 2)
        + _records("parallel_multiple", 2, 2) + _records("live_simple", 1, 1) + _records("live_multiple", 0, 3)
        + _records("irrelevance", 1, 2) + _records("live_irrelevance", 1, 1)
        + _records("multi_turn_base", 1, 4)
    )
    agg = aggregates(per)
    assert agg["non_live_ast"] == pytest.approx((0.75 + 0.5 + 0.0 + 1.0) / 4)  # unweighted
    assert agg["live_ast"] == pytest.approx(1 / 4)  # pooled
    assert agg["irrelevance"] == pytest.approx(0.75) and agg["relevance"] is None
    assert agg["multi_turn"] == pytest.approx(0.25)
    assert per["simple_python"] == {"correct": 3, "total": 4, "accuracy": 0.75}


def test_markdown_table_with_baseline():
    per = category_accuracy(_records("simple_python", 1, 2))
    base = category_accuracy(_records("simple_python", 2, 2) + _records("irrelevance", 0, 1))
    table = markdown_table(per, base, name="ours", baseline_name="Qwen2.5-0.5B")
    lines = table.splitlines()
    assert lines[0] == "| metric | ours | Qwen2.5-0.5B |"
    assert "| simple_python | 50.0 (1/2) | 100.0 (2/2) |" in lines
    assert "| irrelevance | - | 0.0 (0/1) |" in lines
    assert "| **non_live_ast** | 50.0 | 100.0 |" in lines
    assert "| metric | ours |" == markdown_table(per, name="ours").splitlines()[0]
