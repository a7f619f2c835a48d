"""Fixtures shared by several test modules (a module may still define its own ``tiny`` with extras)."""

from __future__ import annotations

import os

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # a pytest-xdist worker: its share of the cores, not all of them
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

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
