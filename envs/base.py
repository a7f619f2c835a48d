"""The chat environment protocol shared by every chordgym environment.

An episode is a conversation. ``reset`` returns the opening messages (system prompt, user request);
``step`` takes the assistant's text and returns only the messages that follow it (tool results, a user
follow-up), so that a rollout can render exactly that delta with the chat template and never re-encode
tokens the model sampled. The caller owns the conversation; the environment owns the task and the reward.

The contract the trainer and ``agents.evaluate`` rely on (``docs/new-tool-env.md``, "The contract"):

* ``num_tasks`` and ``reset(options={"index": i})`` for ``0 <= i < num_tasks``, deterministic per index;
* ``reset``'s info (``envs.episode.ResetInfo``): ``task_id`` (a stable id: paired comparisons match
  entries by it), optionally ``kind`` (accuracy is also reported per kind) and ``expert`` (the expert
  continuation, needed by every algorithm with mu > 0);
* an episode is *solved* when its final reward is >= 1.0 (accuracy, McNemar pairs); rewards below carry
  the training signal only;
* the info of the step that ends the episode (``envs.episode.StepInfo``) has ``failure``: ``None`` when
  the episode is solved, otherwise a short category saying why it failed (ToolACE's ``envs.toolace.failures``,
  BFCL's checker ``error_type``, the math env's ``wrong_answer`` ...), tallied per suite; ``step`` fills
  ``turns`` itself;
* ``task_ids`` for the trainer's train/held-out overlap warning, ``corpus_metrics(records)`` for metrics
  computed over a whole evaluation run (an F1, a sequence accuracy), both optional.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
from gymnasium import spaces

from envs.episode import Messages, ResetInfo, StepInfo
from envs.spaces import MessagesSpace

StepResult = tuple[Messages, float, bool, bool, StepInfo]


class ChatEnv(gym.Env):
    """Base class: a multi-turn text environment with a turn cap.

    Subclasses hold a list of tasks (``num_tasks``; ``reset(options={"index": i})`` picks task ``i``) and
    implement ``_reset_task(options) -> (messages, info)`` and
    ``_step_turn(assistant_text) -> (messages, reward, terminated, info)``, their infos a ``ResetInfo`` /
    ``StepInfo`` plus keys of their own; this class counts turns, truncates at ``max_turns`` (see
    ``_on_truncate``, which sets the final info of a cut episode, ``failure`` included) and keeps the
    transcript in ``self.messages`` for inspection.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, max_turns: int = 8, max_action_chars: int = 32_768, render_mode: str | None = None):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.render_mode = render_mode
        self.observation_space = MessagesSpace()
        self.action_space = spaces.Text(max_length=max_action_chars)
        self.messages: Messages = []
        self.turn = 0
        self.done = False
        self.finish_reason: str | None = None

    # -- the Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Messages, ResetInfo]:
        super().reset(seed=seed)
        messages, info = self._reset_task(options or {})
        self.messages = [dict(m) for m in messages]
        self.turn = 0
        self.done = False
        return messages, cast(ResetInfo, info)

    def step(self, action: str, finish_reason: str | None = None) -> StepResult:
        """Take the assistant's text. ``finish_reason`` is the generator's ("stop", "eos", "length"):
        a subclass reads ``self.finish_reason`` to treat a response cut by the length cap differently."""
        if self.done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            raise TypeError(f"action must be the assistant's text (str), got {type(action).__name__}")
        self.turn += 1
        self.finish_reason = finish_reason
        self.messages.append({"role": "assistant", "content": action})
        messages, reward, terminated, info = self._step_turn(action)
        truncated = not terminated and self.turn >= self.max_turns
        if truncated:
            reward, info = self._on_truncate(reward, info)
        info.setdefault("turns", self.turn)
        self.messages.extend(dict(m) for m in messages)
        self.done = terminated or truncated
        if self.done:
            self._on_episode_end()
        return messages, float(reward), bool(terminated), bool(truncated), cast(StepInfo, info)

    @property
    def num_tasks(self) -> int:
        """How many tasks ``reset(options={"index": i})`` can pick from."""
        raise NotImplementedError

    @property
    def task_ids(self) -> list[str] | None:
        """The ids of the tasks, in index order, so that the trainer can warn when its training and held-out
        splits share tasks; ``None`` (the default) when the environment cannot list them cheaply."""
        return None

    def corpus_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics over a whole evaluation run of this environment's split, for what no single episode can
        score (a corpus F1, a sequence accuracy). ``records`` are ``agents.evaluate``'s entries of this suite:
        ``id``, ``index``, ``output`` (the assistant texts), ``reward``, ``correct`` and ``verdict`` (the
        episode's info: reset info updated by the final step's). Returns name -> value; they appear in
        ``results.json`` (``summary.corpus_metrics``) and ``results.md``. Default: none."""
        return {}

    def call_schemas(self) -> list[dict[str, Any]] | None:
        """The tools the current turn may call, in ToolACE/BFCL's schema dialect, for schema-guided decoding
        (``tools.call_grammar``); ``None`` when replies are not pythonic call lists (the default)."""
        return None

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return "\n".join(f"[{m['role']}] {m['content']}" for m in self.messages)
        return None

    # -- what subclasses provide ---------------------------------------------------------------------
    def _reset_task(self, options: dict[str, Any]) -> tuple[Messages, dict[str, Any]]:
        raise NotImplementedError

    def _step_turn(self, assistant_text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        raise NotImplementedError

    def _on_episode_end(self) -> None:
        """Release what the finished episode held (a tool worker process, a connection) now rather than at
        the next ``reset``: an environment can sit finished for a whole training step. Default: nothing."""

    def _on_truncate(self, reward: float, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Reward and final info of an episode cut at the turn cap; default: the last turn's stand (a
        subclass whose intermediate infos carry no ``failure`` sets it here)."""
        return reward, info
