"""``agents.heldout.evaluate_tasks``: one record per task, in the order given, read from the episode's final
info, and the same record whatever the batch split."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agents import Generation, SamplingParams, load_tokenizer
from agents.heldout import evaluate_tasks
from envs import ChatEnv

EOT = "<|im_end|>"


class TaskNumberEnv(ChatEnv):
    """Task ``i`` asks for its number; a reply naming it gets a tool message, then the episode ends: even
    tasks solved (reward 1), odd ones not (0.25, ``failure`` ``odd_task``)."""

    def __init__(self) -> None:
        super().__init__(max_turns=4)
        self.index = 0

    @property
    def num_tasks(self) -> int:
        return 6

    def _reset_task(self, options: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        self.index = int(options["index"])
        opening = [{"role": "system", "content": "Say the task number."},
                   {"role": "user", "content": f"task {self.index}"}]
        return opening, {"task_id": f"t{self.index}", "kind": "even" if self.index % 2 == 0 else "odd",
                         "expert": [{"role": "assistant", "content": f"task {self.index}"}]}

    def _step_turn(self, text: str) -> tuple[list[dict[str, str]], float, bool, dict[str, Any]]:
        if self.turn == 1:
            return [{"role": "tool", "content": f"checked {text}"}], 0.0, False, {}
        solved = self.index % 2 == 0
        return [], 1.0 if solved else 0.25, True, {"failure": None if solved else "odd_task",
                                                  "seen": {self.index}}


class TaskEchoEngine:
    """Replies with the last task number in the prompt and, when sampling, the row's random stream as
    ``HFEngine`` seeds it (``row_seeds[i]``, else ``(seed, i)``): a record then shows which prompt and which
    stream produced it."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.eot = tokenizer.convert_tokens_to_ids(EOT)
        self.batch_sizes: list[int] = []

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Generation]:
        self.batch_sizes.append(len(prompts))
        out = []
        for row, prompt in enumerate(prompts):
            number = re.findall(r"task (\d+)", self.tokenizer.decode(prompt))[-1]
            stream = sampling.row_seeds[row] if sampling.row_seeds else (sampling.seed, row)
            text = f"task {number}" + ("" if sampling.is_greedy else f" stream {stream}")
            ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.eot]
            out.append(Generation(token_ids=ids, logprobs=[0.0] * len(ids), finish_reason="stop"))
        return out


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer("tiny-random")


GREEDY = SamplingParams(greedy=True, max_new_tokens=16)


def test_one_record_per_task_in_the_order_given(tokenizer) -> None:
    engine = TaskEchoEngine(tokenizer)
    batches: list[int] = []
    records = evaluate_tasks([TaskNumberEnv(), TaskNumberEnv()], [4, 1, 3], engine, tokenizer, GREEDY,
                             on_batch=batches.append)
    assert batches == [2, 1] and engine.batch_sizes == [2, 2, 1, 1]  # two turns per batch
    assert [r.index for r in records] == [4, 1, 3]
    assert [r.id for r in records] == ["t4", "t1", "t3"]
    assert [r.output for r in records] == [["task 4", "task 4"], ["task 1", "task 1"], ["task 3", "task 3"]]
    assert [r.environment for r in records] == [["checked task 4"], ["checked task 1"], ["checked task 3"]]
    assert records[1].prompt == [{"role": "system", "content": "Say the task number."},
                                 {"role": "user", "content": "task 1"}]
    assert [r.reward for r in records] == [1.0, 0.25, 0.25]
    assert [r.correct for r in records] == [True, False, False]
    assert [r.failure for r in records] == [None, "odd_task", "odd_task"]
    verdict = records[1].verdict
    assert verdict["kind"] == "odd" and verdict["failure"] == "odd_task" and verdict["seen"] == "{1}"
    assert "messages" not in verdict and "expert" not in verdict
    entry = json.loads(json.dumps(records[1].entry()))
    assert entry == {"index": 1, "id": "t1", "prompt": records[1].prompt, "output": ["task 1", "task 1"],
                     "reward": 0.25, "correct": False, "failure": "odd_task", "verdict": verdict}


@pytest.mark.parametrize("sampling", [GREEDY, SamplingParams(temperature=0.8, max_new_tokens=16, seed=7)],
                         ids=["greedy", "seeded"])
def test_a_record_does_not_depend_on_its_batch(tokenizer, sampling: SamplingParams) -> None:
    def entries(n_envs: int, indices: list[int]) -> dict[int, dict]:
        records = evaluate_tasks([TaskNumberEnv() for _ in range(n_envs)], indices, TaskEchoEngine(tokenizer),
                                 tokenizer, sampling)
        return {r.index: r.entry() for r in records}

    whole = entries(6, list(range(6)))
    assert entries(1, list(range(6))) == whole
    assert entries(4, [5, 3, 1, 0, 2, 4]) == whole  # another order, another split: the same records
    # the trainer's two ranks: every other task each
    assert {**entries(3, [0, 2, 4]), **entries(3, [1, 3, 5])} == whole
    if not sampling.is_greedy:  # each task draws from its own stream
        assert len({e["output"][0].split(" stream ")[1] for e in whole.values()}) == 6
