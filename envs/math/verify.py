"""Answer checking with math-verify under a hard time limit that works from any thread.

Why a worker process: math-verify's own timeouts (``parsing_timeout``, ``timeout_seconds``) use
``signal.alarm``, which (a) raises ``ValueError`` outside the main thread, so they cannot be used from a
rollout thread pool, and (b) cannot interrupt C code at all: ``\\boxed{9^{9^{9^{9^9}}}}`` makes sympy
build an integer power inside CPython's C big-int routine, which no signal stops. So every check runs in
a small pool of long-lived worker processes (``_verify_worker.py``, started with ``subprocess``, so it
needs neither ``fork`` nor a re-importable ``__main__`` and works inside daemonic processes). The parent
waits on the pipe with ``select`` up to ``timeout_s``; past that it kills the worker (a fresh one starts on
the next check) and the verdict is "wrong, timed out". Inside the worker the math-verify timeouts are on
as well, so the common slow-but-Python case ends early without a restart.

Exact matches and plain integers are decided in-process (most arithmetic answers), and verdicts are
cached, so a group of identical answers costs one check.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

_WORKER = Path(__file__).with_name("_verify_worker.py")
MAX_ANSWER_CHARS = 1_000  # longer boxed contents are not sent to sympy at all

_INT = re.compile(r"^[+-]?\d{1,100}$")
_DECIMAL = re.compile(r"^[+-]?(\d{1,100}(\.\d{0,100})?|\.\d{1,100})$")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``correct``, and why not (``timed_out``, ``error``) when it is not."""

    correct: bool
    timed_out: bool = False
    error: str | None = None


def _normalize(text: str) -> str:
    text = text.strip().strip("$").strip()
    text = re.sub(r"\\[,;!: ]|~", "", text)  # LaTeX spacing
    text = re.sub(r"\\text\{\s*\}", "", text)
    return text.rstrip(".").replace(" ", "")


def quick_verdict(gold: str, answer: str) -> Verdict | None:
    """Decide the easy cases without sympy: identical text, or two plain numbers. ``None``: not easy."""
    g, a = _normalize(gold), _normalize(answer)
    if g == a and g:
        return Verdict(True)
    if _INT.match(g) and _INT.match(a):
        return Verdict(int(g) == int(a))
    if _DECIMAL.match(g) and _DECIMAL.match(a) and Fraction(g) == Fraction(a):
        return Verdict(True)
    return None


class _Worker:
    """One ``_verify_worker.py`` process and the line-buffered pipe to it."""

    def __init__(self, soft_timeout_s: float, startup_timeout_s: float, script: Path = _WORKER):
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(script), str(soft_timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        ready = self._readline(time.monotonic() + startup_timeout_s)
        if not json.loads(ready).get("ready"):
            self.kill()
            raise RuntimeError("math-verify worker did not start")

    def _readline(self, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if not readable:
                raise TimeoutError
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError("math-verify worker exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def ask(self, gold: str, answer: str, timeout_s: float) -> dict:
        self.proc.stdin.write((json.dumps({"gold": gold, "answer": answer}) + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(self._readline(time.monotonic() + timeout_s))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Verifier:
    """Thread-safe math-verify checks, each bounded by ``timeout_s`` wall-clock seconds.

    Args:
        timeout_s: hard limit for one check (parse both sides and compare); past it the worker is killed
            and the verdict is ``Verdict(False, timed_out=True)``.
        workers: worker processes, i.e. checks that may run at once (each costs ~100 MB for sympy).
        startup_timeout_s: how long a worker may take to import math-verify (slow on a loaded machine).
        cache_size: verdicts remembered per (gold, answer) pair.
        worker_script: the worker program (same protocol as ``_verify_worker.py``); tests swap in one that
            hangs to exercise the hard kill.
    """

    def __init__(self, timeout_s: float = 3.0, workers: int = 1, startup_timeout_s: float = 120.0,
                 cache_size: int = 50_000, worker_script: Path = _WORKER):
        if timeout_s <= 0 or workers < 1:
            raise ValueError("timeout_s must be > 0 and workers >= 1")
        self.timeout_s = float(timeout_s)
        self.soft_timeout_s = max(1, int(self.timeout_s / 3))
        self.startup_timeout_s = startup_timeout_s
        self.worker_script = Path(worker_script)
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # a slot; the process starts on first use
        self._cache: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._all: set[_Worker] = set()

    def verify(self, gold: str, answer: str) -> Verdict:
        """Is the boxed ``answer`` equal to ``gold`` (both box contents, LaTeX or plain)?"""
        quick = quick_verdict(gold, answer)
        if quick is not None:
            return quick
        if len(answer) > MAX_ANSWER_CHARS:
            return Verdict(False, error=f"answer longer than {MAX_ANSWER_CHARS} characters")
        key = (gold, answer)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        verdict = self._ask_worker(gold, answer)
        with self._lock:
            self._cache[key] = verdict
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verdict

    def _ask_worker(self, gold: str, answer: str) -> Verdict:
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = _Worker(self.soft_timeout_s, self.startup_timeout_s, self.worker_script)
                with self._lock:
                    self._all.add(worker)
            try:
                reply = worker.ask(gold, answer, self.timeout_s)
            except TimeoutError:
                self._discard(worker)
                worker = None
                return Verdict(False, timed_out=True, error=f"verification timed out after {self.timeout_s:g} s")
            except (EOFError, OSError, ValueError) as e:
                self._discard(worker)
                worker = None
                return Verdict(False, error=f"verification worker failed: {e}")
            return Verdict(bool(reply["correct"]), bool(reply["timed_out"]), reply.get("error"))
        finally:
            self._idle.put(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def close(self) -> None:
        """Stop every worker process (they also exit on their own when this process's pipes close)."""
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.kill()


_DEFAULT: dict[tuple[int, float], Verifier] = {}
_DEFAULT_LOCK = threading.Lock()


def default_verifier(timeout_s: float = 3.0) -> Verifier:
    """The process-wide shared ``Verifier`` for ``timeout_s`` (one per process, so forks get their own)."""
    key = (os.getpid(), float(timeout_s))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = Verifier(timeout_s=timeout_s)
        return _DEFAULT[key]


@atexit.register
def _close_defaults() -> None:
    for verifier in list(_DEFAULT.values()):
        verifier.close()
