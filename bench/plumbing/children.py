"""Child processes that end with their run (timing workers, serving processes, torchrun and its
ranks, a run started again with a preloaded allocator): started with ``child_env`` they die with
their parent, even when it is killed with SIGKILL (Linux's ``PR_SET_PDEATHSIG``, set by the child
itself through ``die_with_parent``: a worker as its first step, through ``child_command``), and a
stop asked of the parent (SIGINT, SIGTERM: ``bench.plumbing.signals``) reaches them at once
through ``wait_for``."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from bench.plumbing import signals

PARENT_ENV = "MNIST_BENCH_PARENT_PID"  # the pid a child dies with
_PR_SET_PDEATHSIG = 1
POLL_S = 0.2  # how often a waiting parent looks for a stop request


def child_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) naming this process as the child's parent."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def child_command(module: str, *args: str) -> list[str]:
    """The command line of a child running ``module.main(args)`` that dies with this process from
    its first moment (``bench.plumbing.child_entry``); start it with ``child_env``."""
    return [sys.executable, "-m", "bench.plumbing.child_entry", module, *args]


def die_with_parent() -> None:
    """In a child started with ``child_env``: killed when its parent dies; ended now if the parent
    died already (before this call). Elsewhere than Linux, or outside such a child: nothing."""
    parent = os.environ.pop(PARENT_ENV, None)  # popped: this process's own children name it instead
    if parent:
        die_with(int(parent))


def die_with(parent: int) -> None:
    """Killed (SIGKILL) when this process's parent, ``parent``, dies; ended now if it has gone
    already. For a process started by another tool (a torchrun rank): its parent when it starts.
    Elsewhere than Linux: nothing."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(128 + signal.SIGKILL)


def wait_for(proc: subprocess.Popen, forward: bool, collect: bool = True,
             watch: Callable[[], None] = lambda: None) -> tuple[str | None, str | None]:
    """Wait for ``proc`` (its output, where it was started with pipes and ``collect``: False where
    another reader takes it), looking for a stop request every ``POLL_S``. On one: ``forward`` sends
    the same signal to the child and goes on waiting (it stops in its own time, keeping what it
    completed); otherwise the child is killed at once and ``StopRequested`` raised. A second signal
    (raised in the handler) kills the child too, as does an exception ``watch`` (called at each look)
    raises."""
    sent = False
    try:
        while True:
            try:
                if collect:
                    return proc.communicate(timeout=POLL_S)
                proc.wait(timeout=POLL_S)
                return None, None
            except subprocess.TimeoutExpired:
                watch()
                asked = signals.requested()
                if asked is None or sent:
                    continue
                if not forward:
                    signals.check()
                proc.send_signal(asked)
                sent = True
    finally:
        if proc.poll() is None:
            proc.kill()
            if collect:
                proc.communicate()  # reaped, its pipes drained and closed
            else:
                proc.wait()
