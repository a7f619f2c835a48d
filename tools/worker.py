"""A forked worker process that runs a toolset's functions where a time-out can really stop them.

``Toolset`` runs local tools here when it has a time limit (``tools.toolset`` describes the protocol and
the guarantees); this module is only the process machinery: fork, limits, a pipe, kill and reap.

Why ``fork``: tools are closures over per-episode state (a ``World``, a ``Shop``), which cannot be pickled
and sent to a spawned interpreter; a forked child inherits them as they are. The costs: one fork per
worker, proportional to the parent's resident memory (measured: about 2 ms to a first answer from a small
interpreter, about 20 ms from one holding a CUDA context and 2.5 GB of host memory); while a worker
lives, the parent's first write to each of its pages copies that page (copy-on-write); and the usual
fork hazards, which the child reduces as far as it can at start-up:

* only the forking thread exists in the child: a lock another thread of the parent held at the fork
  stays locked there. The child replaces ``sys.stdout``/``sys.stderr`` with fresh objects on the same file
  descriptors (their buffer locks are the likeliest to be held), and CPython re-initialises the import and
  logging locks itself. A tool must not use torch/CUDA or an OpenMP pool the parent already started: those
  can deadlock or refuse in a forked child (the time limit still ends such a call);
* inherited sockets and pipes (a tool server's listening socket, an MCP server's stdin, other workers'
  pipes) are pointed at ``/dev/null`` in the child, so a peer still sees them close when the parent closes
  them; regular files stay open. A tool that must share a live connection with the parent cannot run
  here: give its toolset ``isolation="thread"``;
* the child ignores SIGINT (the user's Ctrl-C is the parent's to handle), drops the parent's Python signal
  handlers, and runs in its own process group, so that a kill also ends anything the tool started;
* limits: ``RLIMIT_AS`` at the child's address space at start-up plus ``memory_bytes`` (an allocation
  past it raises ``MemoryError`` in the tool), ``RLIMIT_CPU`` set before each call a little above the
  call's time limit (a backstop: SIGXCPU ends the worker even if nobody kills it), ``RLIMIT_CORE`` 0;
* it exits when the parent dies: on end-of-file of its pipe when idle and, when a call hangs, by
  SIGALRM (default action: terminate), armed before each call for a while after the call's time limit
  (a thread polling ``os.getppid()`` would do too, but starting it costs milliseconds under load).

The parent side kills a worker with SIGKILL (its whole process group) and reaps it with ``waitpid``: at
once, or (``kill(wait=False)``, for a collected toolset) at the next worker event of the process or at
exit, so no zombie outlives the next fork. ``Worker.kill`` is idempotent, and only the process that
forked a worker may kill it (a copy of the object inherited by another worker does nothing).
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import math
import os
import resource
import signal
import stat
import sys
import warnings
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from typing import Final

__all__ = ["CAN_FORK", "Gone", "Worker", "arm", "disarm"]

CAN_FORK: Final = hasattr(os, "fork") and sys.platform.startswith("linux")
_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()  # this process's workers, disowned in each new child
_PENDING: list[Worker] = []  # killed without waiting, not reaped yet


class Gone(Exception):
    """The worker's pipe ended: the worker died, or the tool closed the pipe."""


class Worker:
    """One forked child that runs ``serve(connection)`` and is killed and reaped by ``kill()``.

    ``serve`` runs in the child only, after the set-up described in the module docstring, and the child
    ends with ``os._exit`` whatever happens: it never returns into the parent's code.
    """

    def __init__(self, serve: Callable[[Connection], None], memory_bytes: int | None):
        _reap_pending()
        ours, theirs = Pipe(duplex=True)
        owner = os.getpid()
        with warnings.catch_warnings():  # Python >= 3.12 warns about fork() in a threaded process
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                ours.close()
                _child_setup(theirs, memory_bytes)
                serve(theirs)
            except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
                code = 70
            finally:
                os._exit(code)
        theirs.close()
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first, kill() finds the group
        except OSError:
            pass
        self.pid = pid
        self.owner = owner
        self.connection: Connection = ours
        self.status: int | None = None  # the wait status once reaped
        _LIVE.add(self)

    @property
    def alive(self) -> bool:
        return self.status is None

    def send(self, data: bytes) -> None:
        """Send one message; ``Gone`` if the worker cannot receive it any more."""
        try:
            self.connection.send_bytes(data)
        except (OSError, ValueError) as e:
            raise Gone(str(e)) from None

    def receive(self, timeout_s: float | None, max_bytes: int) -> bytes | None:
        """The worker's next message, or ``None`` if none came within ``timeout_s``; ``Gone`` if the pipe
        ended or the message is longer than ``max_bytes``."""
        try:
            if not self.connection.poll(timeout_s):
                return None
            return self.connection.recv_bytes(max_bytes)
        except (EOFError, OSError, ValueError) as e:
            raise Gone(str(e) or type(e).__name__) from None

    def kill(self, wait: bool = True) -> str:
        """SIGKILL the worker's process group, close the pipe and reap it; returns how it ended.

        ``wait=False`` (a collected toolset) does not wait for the kernel to tear the process down (that
        takes milliseconds for a large parent): a worker not yet gone is reaped by the next ``Worker``
        event of this process, or at exit. Idempotent; does nothing in any process but the one that
        forked the worker."""
        if self.status is None and os.getpid() == self.owner:
            for send_kill in (os.killpg, os.kill):
                try:
                    send_kill(self.pid, signal.SIGKILL)
                    break
                except OSError:
                    continue
            try:
                self.connection.close()
            except OSError:
                pass
            _LIVE.discard(self)
            self._reap(0 if wait else os.WNOHANG)
            if self.status is None:
                _PENDING.append(self)
                return "killed"
        _reap_pending()
        return self.how()

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped by someone else (SIGCHLD ignored, a wait() loop)
            pid, status = self.pid, 0
        if pid:
            self.status = status

    def how(self) -> str:
        """How a reaped worker ended: ``exit code N`` or ``killed by SIGNAME``."""
        if self.status is None:
            return "running"
        code = os.waitstatus_to_exitcode(self.status)
        if code >= 0:
            return f"exit code {code}"
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"


def _reap_pending(block: bool = False) -> None:
    """Reap the workers ``kill(wait=False)`` left; at exit (``block``), wait for them."""
    for worker in list(_PENDING):
        if worker.owner != os.getpid():
            _PENDING.remove(worker)
            continue
        worker._reap(0 if block else os.WNOHANG)
        if worker.status is not None:
            _PENDING.remove(worker)


atexit.register(_reap_pending, True)


# -- the child --------------------------------------------------------------------------------------------

def _child_setup(connection: Connection, memory_bytes: int | None) -> None:
    faulthandler.disable()  # a tool that crashes its worker is reported as the call's error, not a dump
    for number in signal.valid_signals():
        try:
            handler = signal.getsignal(number)
        except (ValueError, OSError):
            continue
        if callable(handler):
            try:
                signal.signal(number, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for number in (signal.SIGALRM, signal.SIGXCPU, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    for worker in [*_LIVE, *_PENDING]:
        worker.owner = -1  # the parent's workers: never kill or reap them from here
    _PENDING.clear()
    _neutralise_descriptors(connection.fileno())
    for name, fd in (("stdout", 1), ("stderr", 2)):
        try:
            setattr(sys, name, open(fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False))
        except OSError:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    gc.freeze()  # inherited objects stay out of the child's collections (fewer copied pages, no finalizers)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes is not None:
        _limit(resource.RLIMIT_AS, _address_space() + memory_bytes)


def _neutralise_descriptors(keep: int) -> None:
    """Point every inherited socket and pipe but ``keep`` (and stdout/stderr) at /dev/null, and stdin too.

    ``dup2`` rather than ``close``: the descriptor number stays taken, so a Python object of the parent
    that still owns it cannot close an unrelated file that reused the number."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = []
    for fd in fds:
        if fd in (1, 2, keep, null):
            continue
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if fd == 0 or stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
            try:
                os.dup2(null, fd, inheritable=fd == 0)
            except OSError:
                pass
    os.close(null)


def _address_space() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _limit(which: int, soft: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):
        pass


def arm(seconds: float) -> None:
    """In a worker, before a call limited to ``seconds``: backstops that end the process if the call runs
    well past its limit and nobody kills it (the parent died): at most about ``seconds`` more CPU time
    (SIGXCPU) and ``seconds + max(1, seconds)`` of wall time (SIGALRM)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _limit(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime + seconds) + 1)
    signal.setitimer(signal.ITIMER_REAL, seconds + max(1.0, seconds))


def disarm() -> None:
    """In a worker, after a call: cancel ``arm``'s alarm."""
    signal.setitimer(signal.ITIMER_REAL, 0)
