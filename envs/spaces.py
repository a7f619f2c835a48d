"""Gymnasium spaces for chat environments: a conversation is a list of role/content messages."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

ROLES = ("system", "user", "assistant", "tool")


class MessagesSpace(spaces.Space[list]):
    """The space of chat-message lists: ``[{"role": r, "content": str}, ...]`` with r in ``ROLES``.

    Gymnasium has no space for variable-length structured text, so this one checks the shape that every
    chordgym environment emits; ``sample`` draws short random conversations for ``check_env``.
    """

    def __init__(self, max_messages: int = 256, max_chars: int = 1_000_000, seed: int | None = None):
        self.max_messages = max_messages
        self.max_chars = max_chars
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list) or len(x) > self.max_messages:
            return False
        for message in x:
            if not isinstance(message, dict):
                return False
            if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
                return False
            if len(message["content"]) > self.max_chars:
                return False
        return True

    def sample(self, mask: Any = None, probability: Any = None) -> list[dict[str, str]]:
        alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz ()[]=,\"'0123456789"))
        n = int(self.np_random.integers(1, 4))
        out = []
        for _ in range(n):
            role = ROLES[int(self.np_random.integers(0, len(ROLES)))]
            length = int(self.np_random.integers(0, 40))
            out.append({"role": role, "content": "".join(self.np_random.choice(alphabet, size=length))})
        return out

    def __repr__(self) -> str:
        return f"MessagesSpace(max_messages={self.max_messages})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessagesSpace) and other.max_messages == self.max_messages
