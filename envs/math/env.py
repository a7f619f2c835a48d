r"""``MathEnv``: math word problems and arithmetic graded by math-verify, with CHORD's reward.

An episode is one problem. The model answers with step-by-step reasoning ending in ``\boxed{answer}``.
Optional multi-turn features:

- ``tools=True``: the model may first call the calculator with the pythonic syntax
  ``[calculator(expression="...")]`` (a reply that is only a call list and has no ``\boxed{}``); the step
  returns one ``tool`` message and the episode goes on;
- ``retries=k``: after a wrong / unformatted answer the user says it is incorrect and the model may answer
  again, at most ``k`` times and within ``max_turns``.

Reward of the episode = the reward of its final answer (see ``envs.math.reward``): every intermediate step
(a tool call, an answer followed by a retry) returns 0.0 and the last step returns the final answer's
reward, so the sum and the last step's reward agree. An episode that hits ``max_turns`` without a final
answer (its last turn was a tool call) gets the no-answer reward -0.1, or the reward of an earlier wrong
answer if there was one.

The info of the step that ends an episode has ``failure`` (``envs.episode``): ``None`` when the final
answer is correct, else ``wrong_answer``, ``verify_timeout``, ``no_boxed_answer``, ``overlong``
(``envs.math.reward.failure_of``) or ``no_answer`` (cut at the turn cap before any answer).

Over-long responses: the rollout can say a turn was cut by the generation length cap with
``env.step(text, finish_reason="length")`` (every ``ChatEnv`` takes it; ``agents.rollout`` passes the
generator's finish reason); without that, a response longer than ``max_response_chars`` counts as over-long.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from envs.base import ChatEnv, Messages
from envs.math.answer import last_boxed
from envs.math.expert import expert_solution
from envs.math.problems import SPLITS, Problem, load_jsonl, reasoning_gym_problems
from envs.math.reward import CORRECT, FORMAT, Score, failure_of, score_response
from envs.math.verify import Verifier, default_verifier

SYSTEM_PROMPT = (
    "You are a careful math assistant. Solve the problem step by step, showing your reasoning. "
    "End your reply with the final answer in \\boxed{}, for example \\boxed{42}. "
    "Give exactly one final answer."
)
TOOL_PROMPT = (
    "\n\nYou can use a calculator. To call it, reply with only the call list and nothing else, e.g.\n"
    '[calculator(expression="12 * (3 + 4) / 7")]\n'
    "The result comes back in the next message; then continue, and give the final answer in \\boxed{}.\n"
    "The calculator's schema:\n{schema}"
)
FEEDBACK = {
    "wrong": "That answer is incorrect. Try again.",
    "format": "Your reply has no final answer in \\boxed{}. Try again and end with \\boxed{your answer}.",
    "overlong": "Your reply was too long and had no final answer in \\boxed{}. Try again, more concisely, "
                "and end with \\boxed{your answer}.",
}


class MathEnv(ChatEnv):
    """Math problems graded with math-verify on the last ``\\boxed{}``.

    Args:
        source: ``"reasoning_gym"`` (generated) or ``"jsonl"`` (``jsonl_path``).
        generators: reasoning-gym generators and weights: a list of names, ``{name: weight}``, or
            ``{name: {"weight": w, **config}}`` where the config goes to ``reasoning_gym.create_dataset``
            (e.g. ``min_terms``, ``max_digits``). Default: basic_arithmetic, chain_sum, gsm_symbolic, equal.
        jsonl_path: JSONL file of ``{"question", "answer", "solution"?}``; ``{split}`` is substituted.
        split: ``"train"``, ``"val"`` or ``"test"``; the held-out splits are disjoint from train.
        size: number of problems (reasoning_gym: required; jsonl: a cap, ``None`` = all lines).
        seed: seed of problem generation (episodes are drawn with ``reset(seed=...)``'s generator).
        max_turns: turn cap of an episode.
        tools: offer the calculator tool.
        retries: how many times a wrong answer gets feedback and another try.
        max_response_chars: a response longer than this without a final answer is over-long (-1).
        verify_timeout_s: hard time limit of one math-verify check (wrong and ``timed_out`` past it).
        system_prompt: replaces the default system prompt (the calculator text is still appended).
        verifier: a ``Verifier`` to use instead of the process-wide shared one.
    """


    def __init__(self, source: str = "reasoning_gym", generators: Any = None, jsonl_path: str | None = None,
                 split: str = "train", size: int | None = 1000, seed: int = 0, max_turns: int = 4,
                 tools: bool = False, retries: int = 0, max_response_chars: int = 8_000,
                 verify_timeout_s: float = 3.0, system_prompt: str | None = None,
                 verifier: Verifier | None = None, render_mode: str | None = None):
        super().__init__(max_turns=max_turns, render_mode=render_mode)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if retries < 0 or max_response_chars < 1:
            raise ValueError("retries must be >= 0 and max_response_chars >= 1")
        if source == "reasoning_gym":
            if not size or size < 1:
                raise ValueError("size (number of problems) must be >= 1 for source='reasoning_gym'")
            self.problems: list[Problem] = reasoning_gym_problems(generators, split, int(size), int(seed))
        elif source == "jsonl":
            if not jsonl_path:
                raise ValueError("source='jsonl' needs jsonl_path")
            self.problems = load_jsonl(jsonl_path, split, size)
        else:
            raise ValueError(f"source must be 'reasoning_gym' or 'jsonl', got {source!r}")
        self.source, self.split, self.seed = source, split, seed
        self.tools_enabled = bool(tools)
        self.retries = int(retries)
        self.max_response_chars = int(max_response_chars)
        self.verifier = verifier or default_verifier(verify_timeout_s)
        self.system_prompt = self._build_system_prompt(system_prompt or SYSTEM_PROMPT)
        self._toolset = None
        if self.tools_enabled:
            from envs.math.calculator import calculator_toolset
            self._toolset = calculator_toolset()
        self._experts: dict[Problem, tuple[str | None, str | None]] = {}
        self.problem: Problem | None = None
        self._retries_used = 0
        self._tool_calls = 0
        self._last_score: Score | None = None

    # -- set-up ------------------------------------------------------------------------------------
    def _build_system_prompt(self, base: str) -> str:
        if not self.tools_enabled:
            return base
        from envs.math.calculator import CALCULATOR
        return base + TOOL_PROMPT.replace("{schema}", json.dumps(CALCULATOR.openai_schema()["function"]))

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def num_tasks(self) -> int:
        """Number of problems; ``reset(options={"index": i})`` picks problem ``i``."""
        return len(self.problems)

    @property
    def task_ids(self) -> list[str]:
        """The problems' uids, in index order (for the trainer's train/held-out overlap warning)."""
        return [p.uid for p in self.problems]

    def expert_text(self, problem: Problem) -> tuple[str | None, str | None]:
        """The problem's expert solution if it scores +1 with this env's reward, else (None, reason)."""
        if problem not in self._experts:  # keyed by content: custom problems may share a uid
            if len(self._experts) >= 100_000:
                self._experts.clear()
            text = expert_solution(problem)
            if text is None:
                self._experts[problem] = (None, "no worked solution for this problem")
            else:
                score = score_response(text, problem.answer, self.verifier, self.max_response_chars)
                ok = score.reward == CORRECT
                self._experts[problem] = (text, None) if ok else (None, f"expert solution scored {score.reward}")
        return self._experts[problem]

    # -- the episode -------------------------------------------------------------------------------
    def _reset_task(self, options: dict[str, Any]) -> tuple[Messages, dict[str, Any]]:
        if "problem" in options:
            p = options["problem"]
            if isinstance(p, Mapping):
                p = Problem(uid=str(p.get("uid", "custom")), question=str(p["question"]),
                            answer=str(p["answer"]).strip(), source="custom", solution=p.get("solution"),
                            expression=p.get("expression"))
            index = None
        else:
            index = options.get("index")
            if index is None:
                index = int(self.np_random.integers(len(self.problems)))
            index = int(index) % len(self.problems)
            p = self.problems[index]
        self.problem = p
        self._retries_used = 0
        self._tool_calls = 0
        self._last_score = None
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": p.question}]
        info: dict[str, Any] = {"task_id": p.uid, "index": index, "source": p.source, "split": self.split,
                                "answer": p.answer}
        expert, why = self.expert_text(p)
        if expert is not None:
            info["expert"] = [{"role": "assistant", "content": expert}]
        else:
            info["expert_error"] = why
        return messages, info

    def _step_turn(self, assistant_text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        assert self.problem is not None, "reset() first"
        cut = self.finish_reason == "length"
        if self._is_tool_turn(assistant_text, cut):
            return self._tool_turn(assistant_text)
        score = score_response(assistant_text, self.problem.answer, self.verifier, self.max_response_chars,
                               truncated_by_length=cut)
        self._last_score = score
        info = self._score_info(score)
        can_retry = self._retries_used < self.retries and self.turn < self.max_turns
        if score.reward == CORRECT or not can_retry:
            info.update(final=True, failure=failure_of(score))
            return [], score.reward, True, info
        self._retries_used += 1
        info.update(final=False, retries_used=self._retries_used)
        return [{"role": "user", "content": FEEDBACK[score.outcome]}], 0.0, False, info

    def _on_truncate(self, reward: float, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Cut at the turn cap on a non-answer turn: the last answer's reward, or -0.1 if none came."""
        if self._last_score is None:
            info.update(outcome="no_answer", final=True, failure="no_answer")
            return FORMAT, info
        info.update(self._score_info(self._last_score), final=True, failure=failure_of(self._last_score))
        return self._last_score.reward, info

    # -- helpers -----------------------------------------------------------------------------------
    def _is_tool_turn(self, text: str, cut: bool) -> bool:
        if not self.tools_enabled or cut or len(text) > self.max_response_chars or last_boxed(text) is not None:
            return False
        from tools import looks_like_calls
        return looks_like_calls(text, syntax="pythonic")

    def _tool_turn(self, text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        from tools import ToolCallParseError, ToolResult, parse_tool_calls, tool_message
        assert self._toolset is not None
        try:
            results = self._toolset.execute_all(parse_tool_calls(text, syntax="pythonic"))
        except ToolCallParseError as e:
            results = [ToolResult("invalid_call", error=f"could not parse the call list: {e}")]
        self._tool_calls += len(results)
        info = {"outcome": "tool", "final": False, "tool_calls": self._tool_calls,
                "tool_errors": sum(1 for r in results if not r.ok)}
        return [tool_message(results)], 0.0, False, info

    def _score_info(self, score: Score) -> dict[str, Any]:
        assert self.problem is not None
        return {"outcome": score.outcome, "answer": score.answer, "gold": self.problem.answer,
                "correct": score.outcome == "correct", "timed_out": score.timed_out,
                "verify_error": score.error, "overlong": score.overlong, "answer_reward": score.reward,
                "retries_used": self._retries_used, "tool_calls": self._tool_calls}
