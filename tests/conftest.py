"""Fixtures shared by several test modules (a module may still define its own ``tiny`` with extras)."""

from __future__ import annotations

import pytest
import torch

from agents.models import load_model, tiny_random_model


@pytest.fixture(scope="module")
def tiny():
    """The ``tiny-random`` spec in fp32: ``(model, tokenizer)``. Its greedy output just repeats a newline."""
    return load_model("tiny-random", dtype="fp32")


@pytest.fixture(scope="module")
def sharp(tiny):
    """The same architecture with ``initializer_range=0.5`` in float64: peaked, non-repeating output, where
    batching, padding and cache reuse must not change a single token."""
    _, tok = tiny
    return tiny_random_model(tok, seed=0, dtype=torch.float64, initializer_range=0.5).eval(), tok
