"""BFCLEnv: prompt shape, single-turn episodes, gymnasium's checker, multi-turn ground-truth replay."""

from __future__ import annotations

import json

import pytest

from envs.bfcl import data

pytestmark = pytest.mark.skipif(not data.is_available(),
                                reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)")


def _env(**kw):
    from envs.bfcl.env import BFCLEnv

    return BFCLEnv(**kw)


def test_prompt_shape():
    env = _env(category="simple_python", limit=3)
    messages, info = env.reset(options={"index": 0})
    assert [m["role"] for m in messages] == ["system", "user"] and info["id"] == "simple_python_0"
    system = messages[0]["content"]
    assert system.startswith("You are an expert in composing functions.You are given a question")
    assert "MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), " \
           "func_name2(params)].  You SHOULD NOT include any other text in the response." in system
    assert "Here is a list of functions in json format that you can invoke.\n[\n    {" in system
    functions = json.loads(system.split("that you can invoke.\n", 1)[1])
    assert functions[0]["description"].endswith(" Note that the provided function is in Python 3 syntax.")
    assert env.num_tasks == 3 and env.task_ids == ["simple_python_0", "simple_python_1", "simple_python_2"]


def test_original_system_message_follows_prompt():
    entry = next(e for e in data.load_entries("live_simple") if e["question"][0][0]["role"] == "system")
    env = _env(category="live_simple")
    messages, _ = env.reset(options={"id": entry["id"]})
    assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
    assert messages[0]["content"].endswith("\n\n" + entry["question"][0][0]["content"])
    assert messages[0]["content"].startswith("You are an expert in composing functions.")


def test_single_turn_episode():
    from envs.bfcl.ground_truth import answer_text

    env = _env(category="simple_python", limit=5)
    env.reset(options={"index": 1})
    text = answer_text(env.functions, data.load_answers("simple_python")[env.entry["id"]])
    new, reward, terminated, truncated, info = env.step(text)
    assert (new, reward, terminated, truncated) == ([], 1.0, True, False)
    assert info["valid"] and info["id"] == info["task_id"] == "simple_python_1" and info["decoded"]
    assert info["failure"] is None  # solved: no failure (envs.episode)
    _, reset_info = env.reset(options={"index": 1})
    assert reset_info["task_id"] == "simple_python_1"
    _, reward, terminated, _, info = env.step("I would call the function but I can't.")
    assert reward == 0.0 and terminated and not info["valid"] and "decode" in info["reason"]
    assert info["decoded"] is None and info["failure"] == info["error_type"] == "ast_decoder:decoder_failed"


def test_irrelevance_episode():
    env = _env(category="irrelevance", limit=2)
    env.reset(options={"index": 0})
    assert env.step("None of the functions fit.")[1] == 1.0
    env.reset(options={"index": 0})
    name = env.functions[0]["name"]
    _, reward, _, _, info = env.step(f"[{name}()]")
    assert reward == 0.0 and info["failure"] == info["error_type"] == "irrelevance_error:decoder_success"


def test_seeded_pick_is_reproducible():
    env = _env(category="multiple")
    assert env.reset(seed=7)[1]["id"] == env.reset(seed=7)[1]["id"]


@pytest.mark.parametrize("category", ["simple_python", "live_relevance", "multi_turn_base"])
def test_gymnasium_check_env(category):
    from gymnasium.utils.env_checker import check_env

    check_env(_env(category=category, limit=4), skip_render_check=True)


def test_registry_make():
    from envs import make

    env = make("bfcl", category="parallel", limit=2)
    assert type(env).__name__ == "BFCLEnv" and env.num_tasks == 2


# -- multi-turn ---------------------------------------------------------------------------------------
def _replay(env, index: int) -> tuple[float, dict]:
    from envs.bfcl.multi_turn import ground_truth_replies

    _, info = env.reset(options={"index": index})
    replies = ground_truth_replies(env.entry, env.answers[info["id"]])
    for turn in replies:
        for reply in turn:
            new, reward, terminated, _, _ = env.step(reply)
            assert not terminated and new[0]["role"] == "tool"
        new, reward, terminated, _, final = env.step("Done for this turn.")
    assert terminated
    return reward, final


def test_multi_turn_flow_and_tool_messages():
    env = _env(category="multi_turn_base", limit=1)
    messages, _ = env.reset(options={"index": 0})
    assert messages[0]["role"] == "system" and "GorillaFileSystem" not in messages[0]["content"][:200]
    new, reward, terminated, _, info = env.step("[cd(folder='document'), nope(x=1)]")
    assert not terminated and reward == 0.0 and info["turn"] == 0
    results = json.loads(new[0]["content"])
    assert results[0]["name"] == "cd" and "results" in results[0]
    assert results[1] == {"name": "nope", "error": "name 'nope' is not defined"}
    assert "error" in json.loads(env.step("[_load_scenario(scenario={})]")[0][0]["content"])[0]
    new, *_ = env.step("All done.")  # no call: the turn ends, the next user turn follows
    assert new == [{"role": "user", "content": env.entry["question"][1][0]["content"]}]


def test_multi_turn_wrong_actions_fail():
    env = _env(category="multi_turn_base", limit=2)
    env.reset(options={"index": 0})
    for _ in range(len(env.entry["question"])):
        new, reward, terminated, _, info = env.step("I am not sure.")
    assert terminated and reward == 0.0
    assert info["failure"] == info["error_type"] == "multi_turn:empty_turn_model_response"


def test_multi_turn_step_cap_force_terminates():
    env = _env(category="multi_turn_base", limit=1, max_steps_per_turn=2)
    env.reset(options={"index": 0})
    outs = [env.step("[pwd()]") for _ in range(3)]
    assert [o[2] for o in outs] == [False, False, True] and outs[-1][1] == 0.0
    assert outs[-1][4]["failure"] == outs[-1][4]["error_type"] == "multi_turn:force_terminated"
    assert all("failure" not in o[4] for o in outs[:-1])  # only the step that ends the episode says


def test_miss_func_reveals_held_out_functions():
    env = _env(category="multi_turn_miss_func", limit=1)
    messages, _ = env.reset(options={"index": 0})
    held = env.entry["missed_function"]
    (turn, names), = held.items()
    assert all(f"\"name\": \"{n}\"" not in messages[0]["content"] for n in names)
    for _ in range(int(turn)):
        new, *_ = env.step("Nothing to call.")
    assert new[0]["role"] == "user" and f"'name': '{names[0]}'" in new[0]["content"]
    assert new[0]["content"].endswith("I have updated some more functions you can choose from. What about now?")


def test_multi_turn_base_ground_truth_replay_all():
    env = _env(category="multi_turn_base")  # ~2 s for all 200
    failed = [env.entries[i]["id"] for i in range(env.num_tasks) if _replay(env, i)[0] != 1.0]
    assert failed == []
    reward, final = _replay(env, 0)
    assert final["failure"] is None and final["task_id"] == env.entries[0]["id"]
    assert final["turn_verdicts"] == [{"valid": True, "reason": ""}] * len(env.entries[0]["question"])
    assert isinstance(final["turns"], int) and final["turns"] > len(env.entries[0]["question"])


@pytest.mark.parametrize("category", ["multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"])
def test_multi_turn_ground_truth_replay_subset(category):
    env = _env(category=category)
    for index in range(0, env.num_tasks, 10):  # 20 entries spread over every backend
        reward, final = _replay(env, index)
        assert reward == 1.0, final["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("category", ["multi_turn_miss_func", "multi_turn_miss_param",
                                      "multi_turn_long_context"])
def test_multi_turn_ground_truth_replay_all(category):
    env = _env(category=category)
    failed = [env.entries[i]["id"] for i in range(env.num_tasks) if _replay(env, i)[0] != 1.0]
    assert failed == []
