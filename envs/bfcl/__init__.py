"""BFCL (Berkeley Function Calling Leaderboard) as held-out chordgym environments.

Data, answers, function docs and multi-turn backends come from the ``bfcl-eval`` wheel, installed with
``pip install --no-deps bfcl-eval`` and read by path (the package is never imported). See ``docs/bfcl.md``.
"""

from envs.bfcl.checker import Verdict, check_ast, check_relevance
from envs.bfcl.data import CATEGORIES, BFCLDataMissing, is_available
from envs.bfcl.decode import BFCLDecodeError, DecodedCall, decode

__all__ = [
    "CATEGORIES", "BFCLDataMissing", "BFCLDecodeError", "BFCLEnv", "DecodedCall", "Verdict",
    "check_ast", "check_relevance", "decode", "is_available",
]


def __getattr__(name: str):
    # the env imports gymnasium; keep ``import envs.bfcl`` light for the pure checker helpers
    if name == "BFCLEnv":
        from envs.bfcl.env import BFCLEnv

        return BFCLEnv
    raise AttributeError(name)
