"""ToolACEEnv: expert replays score 1.0; wrong, missing and extra calls score 0; errors never crash."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.toolace import Task, ToolACEEnv, load_split
from envs.toolace.replay import replay_expert
from envs.toolace.reward import graded_turn_score, values_equal
from tools import ToolCall


@pytest.fixture(scope="module")
def env():
    return ToolACEEnv(tasks=[], tool_timeout_s=None)  # the catalog inline: these tests check scoring, not limits


def _task(kind: str, split: str = "val", pred=lambda t: True) -> Task:
    return next(t for t in load_split(split) if t.kind == kind and pred(t))


def _run(env, task, assistant_texts):
    env.reset(options={"task": task})
    out = None
    for text in assistant_texts:
        out = env.step(text)
        if out[2] or out[3]:
            break
    return out


def _expert_assistant(task):
    return [m["content"] for m in task.expert if m["role"] == "assistant"]


def test_check_env():
    check_env(gym.make("chordgym/ToolACE-v0").unwrapped)


@pytest.mark.parametrize("split,limit", [("train", 600), ("val", None), ("test", 400)])
def test_expert_replays_score_one(env, split, limit):
    tasks = load_split(split)[:limit]
    for task in tasks:
        reward, problem = replay_expert(env, task)
        assert problem is None and reward == 1.0, (task.id, problem)
    isolated = ToolACEEnv(tasks=[])  # the default: each episode's tools in a worker process, same messages
    for task in tasks[:20]:
        assert replay_expert(isolated, task) == (1.0, None), task.id


def test_reset_returns_system_and_user_and_info():
    env = ToolACEEnv(split="val")
    messages, info = env.reset(seed=0)
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert system.startswith("You are an expert in composing functions.")
    assert "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]" in system
    assert "Note that the provided function is in Python 3 syntax." in system
    assert set(info) >= {"task_id", "kind", "expert", "ground_truth"}
    again, info2 = env.reset(seed=0)
    assert again == messages and info2["task_id"] == info["task_id"]
    by_index, _ = env.reset(options={"index": 5})
    _, by_id = env.reset(options={"task_id": env.tasks[5].id})
    assert by_id["task_id"] == env.tasks[5].id and by_index[1]["content"] == env.tasks[5].user_messages[0]
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"idx": 1})
    for t in env.tasks[:30]:
        m, _ = env.reset(options={"task": t})
        listed = [f["name"] for f in json.loads(m[0]["content"].split("invoke.\n", 1)[1])]
        assert listed == t.tools


def test_wrong_call_wrong_argument_missing_and_extra_score_zero(env):
    task = _task("parallel")
    gt = task.ground_truth[0][0]
    right = _expert_assistant(task)
    assert _run(env, task, right)[1] == 1.0
    answer = right[-1]
    calls = [f"{c['name']}({', '.join(f'{k}={v!r}' for k, v in c['arguments'].items())})" for c in gt]
    assert _run(env, task, ["[" + ", ".join(calls) + "]", answer])[1] == 1.0
    assert _run(env, task, ["[" + ", ".join(reversed(calls)) + "]", answer])[1] == 1.0  # order-free
    assert _run(env, task, ["[" + calls[0] + "]", answer])[1] == 0.0  # missing call
    assert _run(env, task, ["[" + ", ".join(calls + [calls[0]]) + "]", answer])[1] == 0.0  # extra call
    wrong_name = "[" + ", ".join(["not_a_tool(x=1)"] + calls[1:]) + "]"
    assert _run(env, task, [wrong_name, answer])[1] == 0.0
    first = dict(gt[0]["arguments"])
    key = next(iter(first))
    first[key] = "definitely wrong" if not isinstance(first[key], str) else first[key] + "x"
    bad = [f"{gt[0]['name']}({', '.join(f'{k}={v!r}' for k, v in first.items())})"] + calls[1:]
    assert _run(env, task, ["[" + ", ".join(bad) + "]", answer])[1] == 0.0
    assert _run(env, task, [answer])[1] == 0.0  # no call at all


def test_split_across_assistant_turns_still_matches(env):
    task = _task("parallel")
    gt = task.ground_truth[0][0]
    texts = [f"[{c['name']}({', '.join(f'{k}={v!r}' for k, v in c['arguments'].items())})]" for c in gt]
    assert _run(env, task, texts + ["Done."])[1] == 1.0


def test_dependent_and_multi_turn(env):
    dep = _task("dependent")
    texts = _expert_assistant(dep)
    assert _run(env, dep, texts)[1] == 1.0
    assert _run(env, dep, [texts[0], texts[-1]])[1] == 0.0  # skipped the dependent call
    multi = _task("multi_turn", pred=lambda t: t.meta["style"] == "next")
    texts = _expert_assistant(multi)
    env.reset(options={"task": multi})
    seen_user = False
    for text in texts:
        out, reward, term, trunc, info = env.step(text)
        seen_user |= any(m["role"] == "user" for m in out)
    assert seen_user and term and reward == 1.0 and info["matched"] == [True, True]


def test_no_tool_tasks(env):
    task = _task("no_tool", pred=lambda t: t.meta["subkind"] == "irrelevant")
    assert _run(env, task, ["Sorry, I cannot do that with these functions."])[1] == 1.0
    assert _run(env, task, ["[]"])[1] == 0.0  # an empty reply is not an answer
    offered = task.tools[0]
    assert _run(env, task, [f"[{offered}()]", "Sorry."])[1] == 0.0
    ask = _task("no_tool", pred=lambda t: t.meta["subkind"] == "missing_param")
    assert _run(env, ask, _expert_assistant(ask))[1] == 1.0


def test_parse_errors_are_tool_messages(env):
    task = _task("single")
    env.reset(options={"task": task})
    out, reward, term, trunc, info = env.step("[get_weather_now(city=Paris)]")
    assert not term and reward == 0.0 and out[0]["role"] == "tool"
    item = json.loads(out[0]["content"])[0]
    assert item["name"] == "invalid_call" and "bare name" in item["error"]
    assert info["errors"] == 1 and info["parse_errors"] == 1
    rest = _expert_assistant(task)
    for text in rest:
        out, reward, term, trunc, info = env.step(text)
    assert term and reward == 0.0  # a failed attempt forfeits strict credit


def test_truncation_gives_zero(env):
    task = _task("single")
    short = ToolACEEnv(tasks=[task], max_turns=2)
    short.reset(options={"index": 0})
    call = _expert_assistant(task)[0]
    assert short.step(call)[3] is False
    out, reward, term, trunc, info = short.step(call)
    assert trunc and not term and reward == 0.0 and info["truncated_at_turn_cap"]


def test_partial_mode(env):
    task = _task("parallel", pred=lambda t: len(t.ground_truth[0][0]) == 2)
    partial = ToolACEEnv(tasks=[task], reward_mode="partial")
    gt = task.ground_truth[0][0]
    one = f"[{gt[0]['name']}({', '.join(f'{k}={v!r}' for k, v in gt[0]['arguments'].items())})]"
    partial.reset(options={"index": 0})
    partial.step(one)
    assert partial.step("Here you go.")[1] == 0.5
    assert _run(env, task, [one, "Here you go."])[1] == 0.0


def test_graded_turn_score_hand_computed():
    """ToolRL's three levels over their maximum 1 + |G| + sum |keys(G_j)|."""
    schema = {"properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                             "unit": {"type": "string", "default": "c"}}}
    lookup = lambda name: schema if name == "forecast" else {"properties": {"q": {"type": "string"}}}  # noqa: E731
    want = [ToolCall("forecast", {"city": "Oslo", "days": 3})]          # max = 1 + 1 + 3 (unit by default)
    assert graded_turn_score(want, [ToolCall("forecast", {"city": "oslo ", "days": 3, "unit": "c"})], 0, lookup) == 1.0
    # right tool, one wrong value: 1 + 1 + 2 of 5
    assert graded_turn_score(want, [ToolCall("forecast", {"city": "Oslo", "days": 4})], 0, lookup) == pytest.approx(4 / 5)
    # right tool, a missing and an unknown key: keys {city, unit} vs {city, unit, days, when} -> 2/4, values 2
    got = [ToolCall("forecast", {"city": "Oslo", "when": "now"})]
    assert graded_turn_score(want, got, 0, lookup) == pytest.approx((1 + 0.5 + 2) / 5)
    # wrong tool: nothing; the right one plus an extra call: names 1/2
    assert graded_turn_score(want, [ToolCall("search", {"q": "Oslo"})], 0, lookup) == 0.0
    both = [ToolCall("search", {"q": "Oslo"}), ToolCall("forecast", {"city": "Oslo", "days": 3})]
    assert graded_turn_score(want, both, 0, lookup) == pytest.approx((0.5 + 1 + 3) / 5)
    # an unparsable list dilutes the names only
    assert graded_turn_score(want, want, 1, lookup) == pytest.approx((0.5 + 1 + 3) / 5)
    # two expected calls of one tool pair with the best-scoring actual ones, order-free
    two = [ToolCall("forecast", {"city": "Oslo", "days": 3}), ToolCall("forecast", {"city": "Rome", "days": 1})]
    swapped = [ToolCall("forecast", {"city": "Rome", "days": 1}), ToolCall("forecast", {"city": "Oslo", "days": 3})]
    assert graded_turn_score(two, swapped, 0, lookup) == 1.0
    # no-tool turn
    assert graded_turn_score([], [], 0, lookup) == 1.0
    assert graded_turn_score([], want, 0, lookup) == 0.0 and graded_turn_score([], [], 1, lookup) == 0.0


def test_graded_mode_credits_the_right_tool_with_a_wrong_value(env):
    task = _task("single", pred=lambda t: len(t.ground_truth[0][0]) == 1
                 and any(isinstance(v, str) for v in t.ground_truth[0][0][0]["arguments"].values()))
    graded = ToolACEEnv(tasks=[task], reward_mode="graded")
    call = task.ground_truth[0][0][0]
    args = {k: (v + "x" if isinstance(v, str) else v) for k, v in call["arguments"].items()}
    wrong = f"[{call['name']}({', '.join(f'{k}={v!r}' for k, v in args.items())})]"
    graded.reset(options={"index": 0})
    graded.step(wrong)
    reward = graded.step("Here you go.")[1]
    assert 0.0 < reward < 1.0
    assert _run(graded, task, _expert_assistant(task))[1] == 1.0
    assert _run(env, task, [wrong, "Here you go."])[1] == 0.0


def test_fresh_world_per_episode(env):
    task = _task("single", split="train", pred=lambda t: t.ground_truth[0][0][0]["name"] == "create_event")
    texts = _expert_assistant(task)
    env.reset(options={"task": task})
    first = env.step(texts[0])[0]
    env.reset(options={"task": task})
    assert env.step(texts[0])[0] == first  # same event id: nothing leaked from the last episode


def test_values_compare_type_aware():
    number, integer = {"type": "number"}, {"type": "integer"}
    assert values_equal(1.0, 1, number) and values_equal(1, 1.0, number)
    assert not values_equal(1, 1.0, integer)
    assert not values_equal(1, "1", number) and not values_equal("1", 1, {"type": "string"})
    assert not values_equal(1, True, integer) and not values_equal(True, 1, {"type": "boolean"})
    assert values_equal("Paris", " paris", {"type": "string"})
    assert values_equal({"a": 1}, {"a": 1.0}, {"type": "object", "properties": {"a": number}})
    assert not values_equal([1, 2], [2, 1], {"type": "array", "items": integer})


# -- a user's tasks and tools ---------------------------------------------------------------------------

def _user_task(task_id: str, split: str, tools: list[str] | None = None) -> Task:
    return Task(id=task_id, kind="single", domain="user", tools=tools or ["hang"], user_messages=["go"],
                ground_truth=[[[{"name": "hang", "arguments": {}}]]], expert=[], world_seed=0, split=split)


def test_user_tasks_are_kept_by_split_and_a_missing_split_is_refused(tmp_path) -> None:
    mixed = [_user_task("a", "train"), _user_task("b", "test"), _user_task("c", "train")]
    assert [t.id for t in ToolACEEnv(tasks=mixed, split="test").tasks] == ["b"]
    assert [t.id for t in ToolACEEnv(tasks=mixed, split="train").tasks] == ["a", "c"]
    assert [t.id for t in ToolACEEnv(tasks=mixed).tasks] == ["a", "b", "c"]  # no split named: all of them
    with pytest.raises(ValueError, match=r"split 'val' \(their splits: \['test', 'train'\]\)"):
        ToolACEEnv(tasks=mixed, split="val")
    by_split = {"train": mixed[:1], "test": [_user_task("d", "train")]}
    test_env = ToolACEEnv(tasks=by_split, split="test")
    assert [(t.id, t.split) for t in test_env.tasks] == [("d", "test")]
    with pytest.raises(ValueError, match=r"no split 'val'; its splits: \['test', 'train'\]"):
        ToolACEEnv(tasks=by_split, split="val")
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text(_user_task(f"{split}-0", "train").to_json() + "\n")
    from_files = ToolACEEnv(tasks=str(tmp_path / "{split}.jsonl"), split="test")
    assert [(t.id, t.split) for t in from_files.tasks] == [("test-0", "test")]
    with pytest.raises(ValueError, match="name the one to use"):
        ToolACEEnv(tasks=by_split)


def test_a_hung_user_tool_is_cut_at_the_environments_limit() -> None:
    """A user's toolset without a limit of its own (timeout_s=None) or with a longer one still gets the
    environment's tool_timeout_s (2 s by default): a hang costs one error message, not the run."""
    import time

    from tools import Toolset, tool

    @tool
    def hang() -> dict:
        """Never answers in time."""
        time.sleep(30)
        return {}

    for toolset, env_kwargs, limit in ((Toolset([hang], timeout_s=None), {}, 2.0),
                                       (Toolset([hang]), {"tool_timeout_s": 0.3}, 0.3)):
        env = ToolACEEnv(tasks=[_user_task("a", "train")], toolset_factory=lambda task, ts=toolset: ts, **env_kwargs)
        env.reset(options={"index": 0})
        start = time.perf_counter()
        out, reward, terminated, truncated, info = env.step("[hang()]")
        elapsed = time.perf_counter() - start
        assert f"timed out after {limit:g} s" in out[0]["content"] and info["errors"] == 1
        assert limit <= elapsed < limit + 1.5
        assert toolset.timeout_s in (None, 5.0)  # the user's object is not changed


def test_a_finished_episode_stops_its_tool_worker():
    """A worker that outlived its episode kept copy-on-write copies of the trainer's pages until the next
    reset; ``make train`` on vLLM ran out of memory that way. The worker now ends with the episode."""
    env = ToolACEEnv(split="train", tool_isolation="process")
    index = next(i for i, t in enumerate(env.tasks) if t.kind == "single")
    _, info = env.reset(options={"index": index})
    _, _, terminated, truncated, _ = env.step(info["expert"][0]["content"])
    assert not (terminated or truncated) and env.toolset._worker is not None and env.toolset._worker.alive
    worker = env.toolset._worker
    for message in info["expert"][1:]:
        if message["role"] == "assistant":
            _, _, terminated, truncated, _ = env.step(message["content"])
            if terminated or truncated:
                break
    assert terminated and env.toolset._worker is None and not worker.alive
