"""Task data: JSON round trip, split loading and its errors, generator determinism, held-out test split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from envs.toolace import Task, load_split, read_tasks
from envs.toolace.chitchat import CHITCHAT, N_TEST
from envs.toolace.data import generate_all
from envs.toolace.env import expert_check
from envs.toolace.generator import generate_split
from envs.toolace.splits import TEST_TOOLS, TRAIN_TOOLS
from tools.catalog import TOOL_DOMAIN


@pytest.fixture(scope="module")
def splits():
    return {s: load_split(s) for s in ("train", "val", "test")}


def test_roundtrip():
    task = generate_split("train", 5, seed=11)[3]
    assert Task.from_json(task.to_json()) == task
    with pytest.raises(ValueError, match="missing field"):
        Task.from_dict({"id": "x"})
    with pytest.raises(ValueError, match="unknown kind"):
        Task.from_dict({**task.to_dict(), "kind": "bogus"})


def test_broken_line_names_file_and_line(tmp_path, caplog):
    good = generate_split("train", 3, seed=2)
    path = tmp_path / "t.jsonl"
    path.write_text(good[0].to_json() + "\n{not json\n" + good[1].to_json() + "\n" + json.dumps({"id": 1}) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: invalid task line"):
        read_tasks(path)
    with caplog.at_level("WARNING"):
        kept = read_tasks(path, on_error="skip")
    assert [t.id for t in kept] == [good[0].id, good[1].id]
    assert "skipped 2 invalid line(s)" in caplog.text


def test_generator_is_deterministic(tmp_path):
    sizes = {"train": 40, "val": 10, "test": 10}
    generate_all(tmp_path / "a", seed=7, sizes=sizes, check=expert_check())
    generate_all(tmp_path / "b", seed=7, sizes=sizes)
    generate_all(tmp_path / "c", seed=8, sizes=sizes, check=expert_check())
    for s in ("train", "val", "test"):
        a = (tmp_path / "a" / f"{s}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / f"{s}.jsonl").read_bytes()
        assert a != (tmp_path / "c" / f"{s}.jsonl").read_bytes()
    assert len(load_split("val", data_dir=tmp_path / "a")) == 10


def test_sizes_kinds_and_no_tool_share(splits):
    assert len(splits["train"]) == 5000
    kinds = Counter(t.kind for t in splits["train"])
    assert set(kinds) == {"single", "parallel", "dependent", "multi_turn", "no_tool"}
    assert kinds["no_tool"] / 5000 > 0.2
    subkinds = Counter(t.meta.get("subkind") for t in splits["train"] if t.kind == "no_tool")
    assert set(subkinds) == {"irrelevant", "missing_param", "chitchat"}
    multi = [t for t in splits["train"] if t.kind == "multi_turn"]
    assert all(t.n_turns >= 2 for t in multi)
    styles = Counter(t.meta["style"] for t in multi)
    assert set(styles) == {"clarify", "next", "stateful", "decline", "close"}


def test_diversity(splits):
    train = splits["train"]
    used = {c for t in train for c in t.needed_tools()}
    assert used == set(TRAIN_TOOLS)
    assert len({t.user_messages[0] for t in train}) > 0.95 * len(train)


def test_test_split_is_held_out(splits):
    for split in ("train", "val"):
        for t in splits[split]:
            assert not set(t.tools) & TEST_TOOLS, (t.id, set(t.tools) & TEST_TOOLS)
    test_chitchat = {text for text, _ in CHITCHAT[len(CHITCHAT) - N_TEST:]}
    for t in splits["test"]:
        needed = set(t.needed_tools())
        if needed:
            assert needed & TEST_TOOLS, t.id
        elif t.meta.get("subkind") == "chitchat":
            assert t.meta["request"] in test_chitchat
        else:
            assert t.meta["tool"] in TEST_TOOLS
    domains = {TOOL_DOMAIN[n] for t in splits["test"] for n in t.needed_tools()}
    assert {"sports", "health"} <= domains


def test_ground_truth_matches_expert_calls(splits):
    for t in splits["val"]:
        calls = [m["content"] for m in t.expert if m["role"] == "assistant" and m["content"].startswith("[")]
        assert len(calls) == sum(len(turn) for turn in t.ground_truth)
        assert t.expert[-1]["role"] == "assistant"
        assert set(t.needed_tools()) <= set(t.tools)


def test_generation_checks_every_task_and_stops_at_a_failed_check():
    seen = []
    tasks = generate_split("train", 6, seed=3, check=seen.append)
    assert len(tasks) == 6 and all(any(s is t for s in seen) for t in tasks)

    def reject(task):
        raise RuntimeError(f"bad {task.id}")

    with pytest.raises(RuntimeError, match="bad train-00000"):
        generate_split("train", 2, seed=3, check=reject)


def test_expert_check_rejects_a_task_whose_expert_does_not_replay():
    task = next(t for t in generate_split("train", 40, seed=5) if t.kind == "single")
    expert_check()(task)  # replays to 1.0: no error
    wrong = Task.from_dict({**task.to_dict(), "expert": [{"role": "assistant", "content": "No idea."}]})
    with pytest.raises(RuntimeError, match=f"task {task.id}: expert replay failed"):
        expert_check()(wrong)


def test_first_calls_write_whole_numbers_as_integers(splits):
    """A whole number the request states is an int in the expert's first calls (``amount=500``, not ``500.0``):
    BFCL's checker takes ints for its float parameters but not ``500.0`` for its integer ones, and the model
    copies the expert's form. (Later calls may copy a float out of a tool's result.)"""
    whole_floats = [(t.id, c["name"], k, v) for s in ("train", "test") for t in splits[s] if t.ground_truth[0]
                    for c in t.ground_truth[0][0] for k, v in c["arguments"].items()
                    if isinstance(v, float) and v.is_integer()]
    assert whole_floats == []
    assert any(isinstance(v, float) for t in splits["train"] if t.ground_truth[0]
               for c in t.ground_truth[0][0] for v in c["arguments"].values())   # 12.5 stays a float
