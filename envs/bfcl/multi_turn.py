"""One BFCL multi-turn episode: function docs, turn flow, execution and BFCL's per-turn checks.

Flow (BFCL prompting mode): each user turn runs until the assistant replies with no decodable call (or
``[]``); every decodable reply is executed on the model's backend chain. In miss_func entries a held-out
function's turn has no user text: BFCL sends the held-out docs instead (``missed_function``). At the end of
each turn the ground truth of that turn is replayed on a separate reference chain and checked:

* a turn with ground-truth calls fails when the model made no call in it;
* state check: every public attribute of every reference instance equals the model's;
* response check: the turn's ground-truth results are a sub-multiset of all the model's results so far.

Turns whose ground truth is empty (the request cannot be served yet) are not checked, as in BFCL. An episode
passes when every turn passes. A turn that runs past ``max_steps_per_turn`` executed steps force-terminates
the episode, which fails (BFCL's step limit: ``count > 20``).

One step executes at most ``MAX_CALLS_PER_STEP`` calls (BFCL has no such limit; its ground truth needs 34 at
most, in one long_context turn): with every call bounded by the backends' argument checks, this bounds a step's
time, and the tool message is bounded by ``backends.tool_message``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from envs.bfcl.backends import BackendSession, Execution, state_differences, tool_message
from envs.bfcl.checker import OK, Verdict
from envs.bfcl.data import load_func_docs
from envs.bfcl.decode import DecodedCall, parse_call_string
from envs.bfcl.ground_truth import keyword_form
from envs.bfcl.prompt import additional_functions_message
from envs.call_prompt import add_python_hint

#: calls executed from one assistant reply; the rest are answered with one error entry, not run
MAX_CALLS_PER_STEP = 64


def entry_functions(entry: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """``(functions shown in the system prompt, {turn index: held-out docs revealed at that turn})``.

    Docs of every involved class in order; miss_func's held-out functions are removed from the prompt list
    and revealed later without the Python note (BFCL adds the note after removing them).
    """
    functions: list[dict[str, Any]] = []
    for class_name in entry["involved_classes"]:
        functions.extend(load_func_docs(class_name))
    held_out: dict[int, list[dict[str, Any]]] = {}
    for turn, names in entry.get("missed_function", {}).items():
        docs = []
        for name in names:
            index = next((i for i, f in enumerate(functions) if f["name"] == name), None)
            if index is not None:
                docs.append(functions.pop(index))
        held_out[int(turn)] = docs
    return add_python_hint(functions), held_out


@dataclass
class TurnRecord:
    """What happened in one user turn: decoded steps, executions and the verdict."""

    steps: list[list[DecodedCall]] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    reference_results: list[str] = field(default_factory=list)
    verdict: Verdict | None = None


class MultiTurnEpisode:
    """State of one multi-turn entry: model and reference chains, turn pointer and per-turn records."""

    def __init__(self, entry: dict[str, Any], ground_truth: list[list[str]], max_steps_per_turn: int = 20):
        self.entry = entry
        self.ground_truth = ground_truth
        self.max_steps_per_turn = max_steps_per_turn
        self.long_context = "long_context" in entry["id"]
        self.functions, self.held_out = entry_functions(entry)
        self.model = self._session()
        self.reference = self._session()
        self.turn = 0
        self.records: list[TurnRecord] = [TurnRecord()]
        self.force_terminated = False

    def _session(self) -> BackendSession:
        return BackendSession(self.entry["involved_classes"], self.entry.get("initial_config", {}),
                              long_context=self.long_context)

    @property
    def num_turns(self) -> int:
        return len(self.entry["question"])

    def turn_messages(self, turn: int) -> list[dict[str, str]]:
        """The user message(s) opening ``turn``; a held-out turn reveals its functions instead."""
        if turn in self.held_out:
            return [additional_functions_message(self.held_out[turn])]
        return [{"role": m["role"], "content": m["content"]} for m in self.entry["question"][turn]]

    def execute_step(self, calls: list[DecodedCall]) -> list[Execution]:
        """Run one decoded, non-empty assistant step on the model chain; flags a step-limit overrun."""
        record = self.records[self.turn]
        record.steps.append(calls)
        executions = [self.model.execute(c.name, (), c.arguments) for c in calls[:MAX_CALLS_PER_STEP]]
        if len(calls) > MAX_CALLS_PER_STEP:
            skipped = calls[MAX_CALLS_PER_STEP]
            executions.append(Execution.failed(
                skipped.name, f"not executed: {len(calls) - MAX_CALLS_PER_STEP} calls past the limit of "
                f"{MAX_CALLS_PER_STEP} calls per reply", self.model.max_result_chars))
        record.executions.extend(executions)
        if len(record.steps) > self.max_steps_per_turn:
            self.force_terminated = True
        return executions

    def tool_message(self, executions: list[Execution]) -> str:
        """The tool message answering one step (size-capped, ``backends.tool_message``)."""
        return tool_message(executions, self.model.max_result_chars)

    def end_turn(self) -> Verdict:
        """Replay the turn's ground truth on the reference chain, check the turn, and move to the next."""
        record = self.records[self.turn]
        expected = self.ground_truth[self.turn] if self.turn < len(self.ground_truth) else []
        for source in expected:
            name, args, kwargs = parse_call_string(source)
            record.reference_results.append(self.reference.execute(name, args, kwargs).text)
        record.verdict = self._check_turn(record, bool(expected))
        self.turn += 1
        if self.turn < self.num_turns:
            self.records.append(TurnRecord())
        return record.verdict

    def _check_turn(self, record: TurnRecord, has_expected: bool) -> Verdict:
        t = self.turn
        if not has_expected:
            return OK
        if not record.steps:
            return Verdict(False, f"turn {t}: no function call, the ground truth has some",
                           "multi_turn:empty_turn_model_response")
        try:
            diffs = state_differences(self.model, self.reference)
        except (RecursionError, MemoryError) as e:  # a model-built directory tree too deep to compare
            return Verdict(False, f"turn {t}: backend state cannot be compared ({type(e).__name__})",
                           "multi_turn:instance_state_mismatch")
        if diffs:
            where = "; ".join(f"{cls}.{', '.join(attrs)}" for cls, attrs in diffs.items())
            return Verdict(False, f"turn {t}: backend state differs from the ground truth's ({where})",
                           "multi_turn:instance_state_mismatch")
        produced = Counter(e.text for r in self.records[: t + 1] for e in r.executions)
        missing = Counter(record.reference_results) - produced
        if missing:
            shown = ", ".join(repr(m[:120]) for m in missing.elements())
            return Verdict(False, f"turn {t}: ground-truth results missing from the model's results: {shown}",
                           "multi_turn:execution_response_mismatch")
        return OK

    @property
    def finished(self) -> bool:
        return self.turn >= self.num_turns

    def final_verdict(self) -> Verdict:
        """Pass iff not force-terminated and every turn passed; the reason names the first failure."""
        if self.force_terminated:
            return Verdict(False, f"turn {self.turn}: force-terminated after more than {self.max_steps_per_turn} "
                           "steps", "multi_turn:force_terminated")
        for record in self.records:
            if record.verdict is not None and not record.verdict:
                return record.verdict
        if not self.finished:
            return Verdict(False, f"episode ended at turn {self.turn} of {self.num_turns}", "multi_turn:unfinished")
        return OK


def ground_truth_replies(entry: dict[str, Any], ground_truth: list[list[str]]) -> list[list[str]]:
    """Ground truth as assistant replies, per turn: one reply holding the turn's calls ([] when it has none).

    For the replay self-test: positional arguments are named from the backend methods' signatures, since a
    model's positional arguments are dropped by BFCL's decoder.
    """
    session = BackendSession(entry["involved_classes"], entry.get("initial_config", {}),
                             long_context="long_context" in entry["id"])
    return [["[" + ", ".join(keyword_form(s, session.resolve) for s in turn) + "]"] if turn else []
            for turn in ground_truth]
