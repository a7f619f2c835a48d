"""``BFCLEnv``: the Berkeley Function Calling Leaderboard as a held-out Gymnasium chat environment.

Single-turn categories: ``reset`` returns BFCL's prompt for one entry, ``step`` decodes the reply, checks it
and terminates with reward 1.0 or 0.0. Multi-turn categories: each decodable reply is executed on the
episode's own backend instances and answered with a tool message; a reply without a decodable call ends the
user turn and the next user turn follows; after the last turn BFCL's per-turn checks decide the reward.
The tool message follows chordgym's contract (one message per executed call list, JSON
``[{"name", "results"}]`` / ``[{"name", "error"}]``), not BFCL's one-message-per-call layout.

``step`` is total: decoding and backend calls are bounded and turn every failure into a decode failure or a
failed call (``decode.py``, ``backends.py``). Should anything still raise while checking a reply, the episode
ends with reward 0 and ``error_type`` ``ENV_ERROR`` instead of the exception ending a whole evaluation.

The final info's ``failure`` (``envs.episode``, the field every environment fills) is the checker's
``error_type`` (``value_error:string``, ``multi_turn:force_terminated``, ...) and ``None`` for a valid reply;
``error_type`` stays beside it, as BFCL names it.

Two modes, as BFCL has: **prompting** (``call_format="pythonic"``, the default: BFCL's system prompt lists
the functions and the reply is a pythonic call list) and **function calling** (``call_format="hermes"`` or
``"llama3_json"``, or ``native``/``auto`` resolved from the chat template by ``agents.evaluate``): the
functions reach the model through its chat template's ``tools=`` (``info["tools"]``, JSON schema), there is
no BFCL system prompt, and the reply is parsed in the template's own call format (``tools.call_formats``);
a reply with no call is an empty call list. Function names keep their dots (BFCL's FC mode renames them
for APIs that refuse dots; a chat template takes them as they are). Function calling covers the
single-turn categories; multi-turn ones run in prompting mode only.
"""

from __future__ import annotations

from typing import Any

from envs.base import ChatEnv, Messages
from envs.bfcl import data
from envs.bfcl.backends import unavailable_reason
from envs.bfcl.checker import Verdict, check_ast, check_relevance
from envs.bfcl.decode import DecodedCall, try_decode
from envs.bfcl.multi_turn import MultiTurnEpisode
from envs.bfcl.prompt import with_system_prompt
from envs.call_prompt import add_python_hint
from tools.call_formats import get_call_format, openai_tool

#: the call formats of BFCL's function-calling mode (the chat template renders the tools)
FC_FORMATS = ("hermes", "llama3_json")

#: ``error_type`` of an episode ended by an unexpected exception inside ``step`` (a bug to report, not a verdict
#: on the model; the fuzz tests assert it never happens)
ENV_ERROR = "chordgym:env_error"


class BFCLEnv(ChatEnv):
    """One BFCL category as an environment; an episode is one entry.

    Args:
        category: a BFCL category (``envs.bfcl.data.CATEGORIES``), default ``simple_python``.
        limit: keep only the first ``limit`` entries (file order).
        max_steps_per_turn: multi-turn step cap per user turn (BFCL: 20); past it the episode fails.
        call_format: ``pythonic`` (prompting mode) or ``hermes`` / ``llama3_json`` (function-calling mode,
            single-turn categories; see the module docstring).
        render_mode: ``"ansi"`` or None.

    ``reset(options={"index": i})`` or ``options={"id": ...}`` selects an entry; otherwise the seeded
    ``np_random`` picks one. After ``reset``, ``info`` is ``{"id", "task_id", "category", "index"}`` (``task_id``
    is the entry's id). A final ``step`` gives ``{"id", "task_id", "category", "valid", "reason", "error_type",
    "failure", "decoded"}`` (multi-turn adds ``"turn_verdicts"``: per-turn ``{"valid", "reason"}``); intermediate
    multi-turn steps give ``{"id", "task_id", "category", "turn", "step", "decoded"}``.
    """

    def __init__(self, category: str = "simple_python", limit: int | None = None, max_steps_per_turn: int = 20,
                 call_format: str = "pythonic", render_mode: str | None = None):
        self.category = data.check_category(category)
        self.multi_turn = data.is_multi_turn(category)
        if call_format not in ("pythonic", *FC_FORMATS):
            raise ValueError(f"call_format must be pythonic (prompting mode) or one of {', '.join(FC_FORMATS)} "
                             f"(function calling; native/auto are resolved from the chat template), got {call_format!r}")
        if call_format != "pythonic" and self.multi_turn:
            raise ValueError(f"call_format={call_format}: function-calling mode covers the single-turn categories; "
                             f"{category} runs in prompting mode (call_format=pythonic)")
        self.call_format = call_format
        self.fc = call_format != "pythonic"
        if max_steps_per_turn < 1:
            raise ValueError(f"max_steps_per_turn must be >= 1, got {max_steps_per_turn}")
        self.max_steps_per_turn = max_steps_per_turn
        entries = data.load_entries(category)
        if limit is not None:
            entries = entries[: max(0, int(limit))]
        if not entries:
            raise ValueError(f"BFCL category {category!r} with limit={limit} has no entries")
        self.entries = entries
        self.answers = data.load_answers(category) if data.has_answers(category) else {}
        self._index_of = {e["id"]: i for i, e in enumerate(entries)}
        if self.multi_turn:
            reason = unavailable_reason(sorted({c for e in entries for c in e["involved_classes"]}))
            if reason:
                raise RuntimeError(f"BFCL category {category!r} cannot run here: {reason}")
            longest = max(len(e["question"]) for e in entries)
            max_turns = (max_steps_per_turn + 2) * longest + 1
        else:
            max_turns = 1
        super().__init__(max_turns=max_turns, render_mode=render_mode)
        self.entry: dict[str, Any] | None = None
        self.functions: list[dict[str, Any]] = []
        self.episode: MultiTurnEpisode | None = None

    # -- task list -------------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return len(self.entries)

    @property
    def task_ids(self) -> list[str]:
        return [e["id"] for e in self.entries]

    def _pick(self, options: dict[str, Any]) -> int:
        if options.get("id") is not None:
            if options["id"] not in self._index_of:
                raise KeyError(f"no BFCL entry {options['id']!r} in {self.category}")
            return self._index_of[options["id"]]
        if options.get("index") is not None:
            index = int(options["index"])
            if not 0 <= index < self.num_tasks:
                raise IndexError(f"index {index} out of range for {self.num_tasks} {self.category} entries")
            return index
        return int(self.np_random.integers(self.num_tasks))

    # -- episode -----------------------------------------------------------------------------------
    def _reset_task(self, options: dict[str, Any]) -> tuple[Messages, dict[str, Any]]:
        index = self._pick(options)
        self.entry = self.entries[index]
        info = {"id": self.entry["id"], "task_id": self.entry["id"], "category": self.category, "index": index}
        if self.multi_turn:
            self.episode = MultiTurnEpisode(self.entry, self.answers[self.entry["id"]], self.max_steps_per_turn)
            self.functions = self.episode.functions
            return with_system_prompt(self.episode.turn_messages(0), self.functions), info
        self.episode = None
        self.functions = add_python_hint(self.entry["function"])
        if self.fc:
            info["tools"] = [openai_tool(f) for f in self.functions]
            return [dict(m) for m in self.entry["question"][0]], info
        return with_system_prompt(self.entry["question"][0], self.functions), info

    def call_schemas(self) -> list[dict[str, Any]] | None:
        """The functions offered at this turn (BFCL's prompting mode speaks pythonic calls; none in
        function-calling mode, whose replies are not pythonic)."""
        return None if self.fc else (list(self.functions) or None)

    def _step_turn(self, assistant_text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        if self.entry is None:
            raise RuntimeError("step() before reset()")
        try:
            if self.multi_turn:
                return self._step_multi_turn(assistant_text)
            return self._step_single_turn(assistant_text)
        except Exception as e:  # noqa: BLE001 - the safety net: one reply must not end a whole evaluation
            try:
                shown = str(e)[:500]
            except Exception:  # noqa: BLE001
                shown = ""
            verdict = Verdict(False, f"internal error while stepping: {type(e).__name__}: {shown}", ENV_ERROR)
            return [], 0.0, True, self._final_info(verdict, None)

    def _decode(self, assistant_text: str) -> tuple[list[DecodedCall] | None, str]:
        """The reply's calls (None when it does not decode) and why not, in this env's call format."""
        if not self.fc:
            return try_decode(assistant_text)
        reply = get_call_format(self.call_format).parse(assistant_text)
        if reply.error is not None:
            return None, reply.error
        return [DecodedCall(c.name, dict(c.arguments)) for c in reply.calls], ""

    def _step_single_turn(self, assistant_text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        calls, error = self._decode(assistant_text)
        if self.category in data.RELEVANCE_CATEGORIES:
            verdict = check_relevance(self.category, calls)
        elif calls is None:
            verdict = Verdict(False, f"cannot decode the reply: {error}", "ast_decoder:decoder_failed")
        elif not calls and self.fc:
            verdict = Verdict(False, "the reply holds no function call", "ast_decoder:decoder_failed")
        else:
            verdict = check_ast(self.category, self.functions, calls, self.answers[self.entry["id"]])
        return [], float(verdict.valid), True, self._final_info(verdict, calls)

    def _step_multi_turn(self, assistant_text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        episode = self.episode
        assert episode is not None
        calls, _ = try_decode(assistant_text)
        decoded = [c.as_bfcl() for c in calls] if calls is not None else None
        if calls:
            turn, step = episode.turn, len(episode.records[episode.turn].steps)
            executions = episode.execute_step(calls)
            content = episode.tool_message(executions)
            if episode.force_terminated:
                return [], 0.0, True, self._final_info(episode.final_verdict(), calls)
            info = {"id": self.entry["id"], "task_id": self.entry["id"], "category": self.category, "turn": turn,
                    "step": step, "decoded": decoded}
            return [{"role": "tool", "content": content}], 0.0, False, info
        episode.end_turn()
        if not episode.finished:
            info = {"id": self.entry["id"], "task_id": self.entry["id"], "category": self.category,
                    "turn": episode.turn, "step": 0, "decoded": decoded}
            return episode.turn_messages(episode.turn), 0.0, False, info
        verdict = episode.final_verdict()
        return [], float(verdict.valid), True, self._final_info(verdict, calls)

    def _final_info(self, verdict: Verdict, calls: list | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.entry["id"], "task_id": self.entry["id"], "category": self.category, "valid": verdict.valid,
            "reason": verdict.reason, "error_type": verdict.error_type,
            "failure": None if verdict.valid else verdict.error_type,
            "decoded": [c.as_bfcl() for c in calls] if calls is not None else None,
        }
        if self.episode is not None:
            info["turn_verdicts"] = [
                {"valid": r.verdict.valid, "reason": r.verdict.reason} if r.verdict else None
                for r in self.episode.records
            ]
        return info

    def _on_truncate(self, reward: float, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        return 0.0, {**info, "valid": False, "reason": "turn cap reached", "error_type": "truncated",
                     "failure": "truncated"}
