"""Toolset limits that hold against hostile or broken tools (regression tests of a fault campaign).

A timed-out call is really stopped (its worker process is killed: no thread, process or CPU time is
left) and cannot change the episode's state afterwards; error texts, calls per reply and the tool
message are capped; memory is limited; nothing a tool raises escapes, not even ``SystemExit`` inline.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from envs.toolace import Task, ToolACEEnv
from tools import ToolCall, Toolset, tool
from tools.catalog import World, build_catalog
from tools.worker import Worker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process isolation needs Linux fork")

REPO = Path(__file__).resolve().parent.parent


def call(ts: Toolset, name: str, **arguments):
    return ts.execute(ToolCall(name, arguments))


def gone(pid: int) -> bool:
    """The process no longer exists (reaped), or is a zombie about to be (it runs nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def reaped(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stateful_toolset(pid_file: Path, timeout_s: float = 0.3, **kwargs) -> tuple[Toolset, dict]:
    """Tools over a fresh ``state`` (as a ``World``): the toolset, and the parent's copy of the state."""
    state = {"n": 0}

    @tool
    def inc() -> int:
        """Add one to the counter and return it."""
        state["n"] += 1
        return state["n"]

    @tool
    def get() -> int:
        """The counter."""
        return state["n"]

    @tool
    def slow_set(value: int, seconds: float) -> int:
        """Sleep, then set the counter.

        Args:
            value: The new value.
            seconds: How long to sleep first.
        """
        with open(pid_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        state["n"] = value
        return value

    @tool
    def spin() -> None:
        """Loop forever on the CPU."""
        with open(pid_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        while True:
            pass

    @tool
    def pid() -> int:
        """The process the tools run in."""
        return os.getpid()

    return Toolset([inc, get, slow_set, spin, pid], timeout_s=timeout_s, **kwargs), state


def pids(pid_file: Path) -> list[int]:
    return [int(line) for line in pid_file.read_text().split()]


# -- time -------------------------------------------------------------------------------------------------

def test_a_busy_loop_is_cut_at_its_limit_and_burns_no_cpu_afterwards(tmp_path):
    ts, _ = stateful_toolset(tmp_path / "pids", timeout_s=0.3)
    start = time.monotonic()
    result = call(ts, "spin")
    elapsed = time.monotonic() - start
    assert result.error == "spin: timed out after 0.3 s"
    assert 0.3 <= elapsed < 0.3 * 3
    (worker,) = pids(tmp_path / "pids")
    assert reaped(worker)  # killed and waited for, not abandoned
    before = cpu_seconds()
    time.sleep(0.5)
    assert cpu_seconds() - before < 0.2  # a spinning leftover would add ~0.5 s
    assert call(ts, "inc").content == 1  # and the toolset goes on


def test_twenty_hung_calls_leave_no_thread_and_no_process(tmp_path, monkeypatch):
    # The workers are recorded as the parent forks them: a worker killed at 0.1 s on a loaded machine may
    # not have run far enough to write its pid to a file (CI once saw 18 of 20).
    forked: list[int] = []
    fork_worker = Worker.__init__

    def recording_fork(self, *args, **kwargs):
        fork_worker(self, *args, **kwargs)  # returns in the parent only
        forked.append(self.pid)

    monkeypatch.setattr(Worker, "__init__", recording_fork)
    ts, _ = stateful_toolset(tmp_path / "pids", timeout_s=0.1)
    threads, tasks = threading.active_count(), set(os.listdir("/proc/self/task"))
    for _ in range(20):
        assert call(ts, "slow_set", value=1, seconds=60).error == "slow_set: timed out after 0.1 s"
    assert len(set(forked)) == 20 and all(reaped(p) for p in forked)  # a fresh worker per call, each reaped
    # No thread started since (by id: a thread of the interpreter's own may have ended meanwhile).
    assert threading.active_count() <= threads and not set(os.listdir("/proc/self/task")) - tasks


def test_a_timed_out_call_cannot_change_the_state_afterwards(tmp_path):
    ts, state = stateful_toolset(tmp_path / "pids", timeout_s=0.3)
    assert [call(ts, "inc").content for _ in range(2)] == [1, 2]
    assert call(ts, "slow_set", value=99, seconds=0.6).error == "slow_set: timed out after 0.3 s"
    time.sleep(0.6)  # past the moment the abandoned call would have set 99
    assert call(ts, "get").content == 2  # a fresh worker replayed the two completed calls, not the third
    assert call(ts, "inc").content == 3
    assert state == {"n": 0}  # the tools' state lives in the worker; the toolset's own copy stays as built


def test_a_tool_that_kills_its_process_is_an_error_and_the_state_survives():
    state = {"n": 0}

    @tool
    def inc() -> int:
        """Count."""
        state["n"] += 1
        return state["n"]

    @tool
    def crash(how: str) -> None:
        """End the process.

        Args:
            how: exit or signal.
        """
        if how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGSEGV)

    ts = Toolset([inc, crash], timeout_s=2.0)
    assert call(ts, "inc").content == 1
    assert call(ts, "crash", how="exit").error == "crash: the tool's process ended (exit code 3); the call had no effect"
    assert call(ts, "inc").content == 2
    assert "killed by SIGSEGV" in call(ts, "crash", how="signal").error
    assert call(ts, "inc").content == 3


def test_a_replay_that_no_longer_completes_is_reported(tmp_path):
    flag = tmp_path / "flag"

    @tool
    def flaky() -> str:
        """Quick the first time, hangs once the flag file exists."""
        while flag.exists():
            time.sleep(0.05)
        return "ok"

    @tool
    def hang() -> None:
        """Hang."""
        time.sleep(60)

    ts = Toolset([flaky, hang], timeout_s=0.2)
    assert call(ts, "flaky").content == "ok"
    flag.touch()  # the world changed under the tool: replaying flaky() will now hang
    assert "timed out" in call(ts, "hang").error
    error = call(ts, "hang").error
    assert error.startswith("hang: could not restore the tools' state: replaying call 1 of 1 (flaky) timed out")
    flag.unlink()
    assert "timed out" in call(ts, "hang").error  # nothing left to replay: the toolset goes on


def test_the_catalogs_convert_number_base_on_a_huge_number_is_cut_at_its_limit():
    ts = build_catalog(World(0), ["convert_number_base", "get_weather_now"], timeout_s=0.5)
    start, cpu = time.monotonic(), cpu_seconds()
    result = call(ts, "convert_number_base", number="f" * 99_000, from_base=16, to_base=3)  # ~10 s of CPU
    elapsed = time.monotonic() - start
    assert result.error == "convert_number_base: timed out after 0.5 s"
    assert elapsed < 0.5 * 3
    time.sleep(0.3)
    assert cpu_seconds() - cpu < 0.5 * 3  # the call's CPU time, and nothing after
    assert call(ts, "get_weather_now", city="Paris").ok


def test_the_environments_default_catalog_runs_in_a_worker_process():
    task = Task(id="w", kind="single", domain="weather", tools=["get_weather_now"], split="train",
                user_messages=["Weather in Paris?"], ground_truth=[[[{"name": "get_weather_now",
                                                                      "arguments": {"city": "Paris"}}]]],
                expert=[{"role": "assistant", "content": "ok"}], world_seed=1)
    env = ToolACEEnv(tasks=[task], tool_timeout_s=0.5)
    env.reset(options={"index": 0})
    out = env.step("[get_weather_now(city='Paris')]")[0]
    assert "results" in json.loads(out[0]["content"])[0]
    assert env.toolset._worker is not None and env.toolset._worker.alive


# -- the worker's life ----------------------------------------------------------------------------------

def test_a_collected_toolset_takes_its_worker_with_it(tmp_path):
    ts, _ = stateful_toolset(tmp_path / "pids")
    worker = call(ts, "pid").content
    assert worker != os.getpid() and not gone(worker)
    del ts
    gc.collect()
    deadline = time.monotonic() + 2
    while not gone(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(worker)  # killed at once; reaped without waiting for the kernel's tear-down ...
    other, _ = stateful_toolset(tmp_path / "pids")
    call(other, "pid")
    time.sleep(0.05)
    call(other.subset(["pid"]), "pid")
    assert reaped(worker)  # ... by the next worker event at the latest
    other.close()


def test_copies_get_their_own_worker_and_the_state_so_far(tmp_path):
    ts, _ = stateful_toolset(tmp_path / "pids")
    assert call(ts, "inc").content == 1
    for other in (copy.copy(ts), ts.subset(["inc", "pid"]), ts.renamed({"inc": "increment"})):
        assert call(other, "pid").content != call(ts, "pid").content
        name = "increment" if "increment" in other else "inc"
        assert call(other, name).content == 2  # replayed inc() first
    assert call(ts, "inc").content == 2  # the copies never touched this one's worker


def test_past_the_cap_the_least_recently_used_idle_worker_stops_and_its_state_replays(tmp_path, monkeypatch):
    """A 200-task evaluation kept a worker per episode alive and ran a 24 GB machine out of memory; at most
    CHORDGYM_MAX_TOOL_WORKERS workers now run, and a stopped one's toolset carries on where it was."""
    from tools.toolset import LIVE_WORKERS
    monkeypatch.setenv("CHORDGYM_MAX_TOOL_WORKERS", "3")
    stopped = LIVE_WORKERS.stopped
    toolsets = [stateful_toolset(tmp_path / "pids", timeout_s=5)[0] for _ in range(5)]
    workers = []
    for k, ts in enumerate(toolsets):
        assert [call(ts, "inc").content for _ in range(k + 1)][-1] == k + 1
        workers.append(call(ts, "pid").content)
    assert sum(not gone(w) for w in workers) == 3 and len(LIVE_WORKERS) == 3
    assert gone(workers[0]) and gone(workers[1]) and not gone(workers[2])  # least recently used first
    assert LIVE_WORKERS.stopped - stopped == 2
    assert call(toolsets[0], "inc").content == 2  # a fresh worker replayed its one inc() first
    assert gone(workers[2]) and sum(not gone(w) for w in workers) == 2
    for ts in toolsets:
        ts.close()
    assert len(LIVE_WORKERS) == 0


def test_a_busy_worker_is_not_stopped_to_make_room(tmp_path, monkeypatch):
    monkeypatch.setenv("CHORDGYM_MAX_TOOL_WORKERS", "1")
    busy, _ = stateful_toolset(tmp_path / "pids", timeout_s=5)
    other, _ = stateful_toolset(tmp_path / "pids", timeout_s=5)
    call(busy, "inc")
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=call(busy, "slow_set", value=7, seconds=0.5)))
    thread.start()
    while not (tmp_path / "pids").exists():
        time.sleep(0.01)
    assert call(other, "inc").content == 1  # over the cap for a while: the busy one is passed over
    thread.join()
    assert result["r"].content == 7 and call(busy, "get").content == 7
    busy.close()
    other.close()


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_worker_cap_is_one_line_naming_the_variable(value, monkeypatch):
    from tools.toolset import max_live_workers
    monkeypatch.setenv("CHORDGYM_MAX_TOOL_WORKERS", value)
    with pytest.raises(ValueError, match=f"CHORDGYM_MAX_TOOL_WORKERS must be a positive integer, got '{value}'"):
        max_live_workers()
    monkeypatch.delenv("CHORDGYM_MAX_TOOL_WORKERS")
    physical_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    assert max_live_workers() == max(8, int(0.2 * physical_gib * 1024 / 150))  # 32 on a 24 GiB machine


def test_pickled_toolset_runs_in_its_own_worker():
    ts = Toolset([f], timeout_s=1.0)
    assert call(ts, "f", x=1).content == 1
    clone = pickle.loads(pickle.dumps(ts))
    assert clone._worker is None and call(clone, "f", x=5).content == 5
    assert clone._worker.pid != ts._worker.pid


def test_the_worker_exits_when_its_parent_dies(tmp_path):
    """The parent is SIGKILLed (no clean-up at all) while a call hangs: the worker ends by itself."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tools import Toolset, ToolCall, tool

        @tool
        def hang() -> None:
            '''Hang.'''
            print(os.getpid(), flush=True)
            time.sleep(60)

        Toolset([hang], timeout_s=0.5).execute(ToolCall("hang", {{}}))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while not gone(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(worker)  # by its alarm, 0.5 + 1 s after the call started


def test_thread_isolation_is_still_available():
    @tool
    def hang() -> None:
        """Hang."""
        time.sleep(1.0)

    ts = Toolset([hang], timeout_s=0.1, isolation="thread")
    assert call(ts, "hang").error == "hang: timed out after 0.1 s"
    assert ts._worker is None
    with pytest.raises(ValueError, match="isolation"):
        Toolset([hang], isolation="fork")  # type: ignore[arg-type]


# -- memory -----------------------------------------------------------------------------------------------

@tool
def hog(mib: int) -> int:
    """Allocate and touch memory.

    Args:
        mib: How many MiB.
    """
    block = bytearray(mib << 20)
    block[:: 4096] = b"x" * len(block[:: 4096])
    return len(block) >> 20


def test_a_tool_allocating_4_gib_gets_a_memory_error_not_the_machines_memory():
    ts = Toolset([hog], timeout_s=5.0)
    assert ts.max_memory_bytes == 1 << 30
    assert call(ts, "hog", mib=4096).error == "hog: MemoryError"
    assert call(ts, "hog", mib=64).content == 64  # under the limit: fine, and the worker survived
    # a smaller cap holds too; the allocation is 8x the cap because the worker may reuse heap it inherited
    # free from the parent (not counted against the cap), which the parent's earlier work leaves behind
    assert Toolset([hog], timeout_s=5.0, max_memory_bytes=64 << 20).execute(ToolCall("hog", {"mib": 512})).error \
        == "hog: MemoryError"


# -- output -----------------------------------------------------------------------------------------------

@tool
def shout(n: int) -> None:
    """Raise an error with a long message.

    Args:
        n: Characters in the message.
    """
    raise ValueError("x" * n)


@pytest.mark.parametrize("timeout_s, isolation", [(1.0, "process"), (1.0, "thread"), (None, "process")])
def test_a_10_mb_exception_message_is_capped(timeout_s, isolation):
    ts = Toolset([shout], timeout_s=timeout_s, isolation=isolation, max_output_chars=1000)
    error = call(ts, "shout", n=10_000_000).error
    assert len(error) <= 1000 and error.startswith("shout: ValueError: xxx")
    assert error.endswith("... [cut: 10000019 characters, limit 1000]")
    assert call(ts, "shout", n=10).error == "shout: ValueError: xxxxxxxxxx"
    tiny = Toolset([shout], timeout_s=timeout_s, isolation=isolation, max_output_chars=10)
    assert len(call(tiny, "shout", n=10_000).error) == 256  # errors keep at least 256 characters


@tool
def f(x: int = 0) -> int:
    """Echo.

    Args:
        x: A number.
    """
    return x


def test_3000_calls_in_one_reply_are_capped(tmp_path):
    ts, _ = stateful_toolset(tmp_path / "pids")
    start = time.monotonic()
    results = ts.execute_all([ToolCall("inc", {})] * 3000)
    elapsed = time.monotonic() - start
    assert len(results) == 33 and [r.content for r in results[:32]] == list(range(1, 33))
    assert results[32].name == "invalid_call" and results[32].error == (
        "too many calls: 3000 in one reply; the first 32 ran and the other 2968 did not (at most 32 calls per reply)")
    assert call(ts, "inc").content == 33  # the 2,968 others never ran
    assert len(Toolset.tool_message(results)["content"]) < 2_000
    start = time.monotonic()
    ts.execute_all([ToolCall("inc", {})] * 32)
    assert elapsed < 3 * (time.monotonic() - start) + 0.5  # the cost of 32 calls, not of 3,000
    assert len(ts.execute_all([ToolCall("inc", {})] * 10, max_calls=4)) == 5
    assert len(ts.execute_all([ToolCall("inc", {})] * 40, max_calls=100)) == 33  # the toolset's cap holds


def test_the_tool_message_is_capped():
    @tool
    def page(n: int) -> str:
        """n characters.

        Args:
            n: How many.
        """
        return "y" * n

    ts = Toolset([page], timeout_s=None, max_output_chars=4096)
    results = ts.execute_all([ToolCall("page", {"n": 4000})] * 8)
    assert [r.ok for r in results] == [True] * 4 + [False] * 4
    assert results[4].error == ("page: result withheld: the tool message is limited to 16384 characters; "
                                "make fewer calls per reply or ask for less")
    assert len(Toolset.tool_message(results)["content"]) <= 16_384 + 4 * 200
    assert [r.ok for r in ts.execute_all([ToolCall("page", {"n": 4000})] * 8, max_message_chars=10_000)] \
        == [True, True, False, False, False, False, False, False]


def test_the_environment_caps_calls_and_message_per_reply():
    task = Task(id="t", kind="single", domain="x", tools=["f"], split="train", user_messages=["go"],
                ground_truth=[[[{"name": "f", "arguments": {}}]]], expert=[], world_seed=0)
    env = ToolACEEnv(tasks=[task], toolset_factory=lambda task: Toolset([f], timeout_s=None))
    env.reset(options={"index": 0})
    start = time.monotonic()
    out, reward, terminated, truncated, info = env.step("[" + ", ".join(["f()"] * 3000) + "]")
    assert time.monotonic() - start < 2.0
    items = json.loads(out[0]["content"])
    assert len(items) == 33 and items[-1]["name"] == "invalid_call" and "at most 32 calls per reply" in items[-1]["error"]
    assert len(out[0]["content"]) < 2_000 and info["errors"] == 1 and len(info["calls"][0]) == 3000
    small = ToolACEEnv(tasks=[task], toolset_factory=lambda task: Toolset([f], timeout_s=None), max_calls_per_reply=2,
                       max_tool_message_chars=50)
    small.reset(options={"index": 0})
    items = json.loads(small.step("[f(x=1), f(x=2), f(x=3)]")[0][0]["content"])
    assert [i.get("results") for i in items] == [1, None, None] and "withheld" in items[1]["error"]
    with pytest.raises(ValueError, match="max_calls_per_reply"):
        ToolACEEnv(tasks=[task], max_calls_per_reply=0)


# -- exceptions that are not Exceptions -----------------------------------------------------------------

@tool
def leave(code: int) -> None:
    """Raise SystemExit.

    Args:
        code: The exit code.
    """
    raise SystemExit(code)


@tool
def interrupt() -> None:
    """Raise KeyboardInterrupt."""
    raise KeyboardInterrupt


def test_system_exit_inline_does_not_escape():
    ts = Toolset([leave, interrupt], timeout_s=None)
    assert call(ts, "leave", code=3).error == "leave: SystemExit: 3"
    # A KeyboardInterrupt in the caller's own thread may be the user's Ctrl-C: it must still stop the run.
    with pytest.raises(KeyboardInterrupt):
        call(ts, "interrupt")


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_system_exit_and_keyboard_interrupt_in_a_worker_are_results(isolation):
    ts = Toolset([leave, interrupt], timeout_s=2.0, isolation=isolation)
    assert call(ts, "leave", code=0).error == "leave: SystemExit: 0"
    assert call(ts, "interrupt").error == "interrupt: KeyboardInterrupt"


def test_system_exit_does_not_escape_env_step():
    task = Task(id="t", kind="single", domain="x", tools=["leave"], split="train", user_messages=["go"],
                ground_truth=[[[{"name": "leave", "arguments": {"code": 1}}]]], expert=[], world_seed=0)
    env = ToolACEEnv(tasks=[task], toolset_factory=lambda task: Toolset([leave], timeout_s=None), tool_timeout_s=None)
    env.reset(options={"index": 0})
    out, reward, terminated, truncated, info = env.step("[leave(code=1)]")
    assert json.loads(out[0]["content"]) == [{"name": "leave", "error": "leave: SystemExit: 1"}]


def test_a_failing_subclass_run_is_a_result():
    class Broken(Toolset):
        def _run(self, t, arguments):
            raise SystemExit("bye")

    assert call(Broken([f]), "f").error == "f: SystemExit: bye"
