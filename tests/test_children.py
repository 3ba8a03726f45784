"""Child processes end with their run: a stop asked of the parent reaches them at once, and a
parent killed with SIGKILL takes them with it (bench.plumbing.children)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.plumbing import signals
from bench.plumbing.children import child_env, wait_for
from bench.plumbing.signals import StopRequested
from tests.conftest import ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has ended: only its exit status is left
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


@pytest.fixture
def stop_asked():
    signals._requested.append(signal.SIGTERM)  # as graceful_stop's handler records a SIGTERM
    yield
    signals._requested.clear()


def test_a_stop_kills_a_worker_at_once_and_stops_the_run(stop_asked):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    start = time.monotonic()
    with pytest.raises(StopRequested):
        wait_for(proc, forward=False)
    assert time.monotonic() - start < 5 and proc.poll() is not None


def test_a_stop_is_forwarded_to_a_child_that_stops_in_its_own_time(stop_asked):
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=child_env())
    time.sleep(0.5)  # its handler set
    wait_for(proc, forward=True)
    assert proc.returncode == 7


def test_a_child_dies_with_a_parent_killed_by_sigkill():
    """A parent that starts a child through child_env, then is SIGKILLed: the child is gone at once."""
    parent = ("import subprocess, sys, time\n"
              "from bench.plumbing.children import child_env\n"
              "code = 'from bench.plumbing.children import die_with_parent; die_with_parent(); import time; "
              "print(\"ready\", flush=True); time.sleep(60)'\n"
              "child = subprocess.Popen([sys.executable, '-c', code], env=child_env(), stdout=subprocess.PIPE, "
              "text=True)\n"
              "child.stdout.readline()\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        child = int(proc.stdout.readline())
        assert _alive(child)
        proc.kill()
    assert _gone_within(child, 3)


def test_a_child_goes_on_while_its_parent_lives_and_its_own_children_name_it():
    code = ("import os; from bench.plumbing.children import PARENT_ENV, child_env, die_with_parent; "
            "die_with_parent(); print(os.environ.get(PARENT_ENV), child_env()[PARENT_ENV] == str(os.getpid()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["None", "True"]


def test_a_run_s_temporary_files_live_in_its_folder_and_a_killed_run_s_go_at_the_next_start(tmp_path, monkeypatch):
    """Inside a run, ``scratch.temporary`` makes its folders in the run folder's ``.scratch`` (a
    child process inherits it); the next start of that run removes what a killed one left, and
    the end of a run removes the folder. Outside a run: the system's temporary folder."""
    import tempfile

    from bench.plumbing import scratch

    monkeypatch.delenv(scratch.ENV, raising=False)
    run_dir = tmp_path / "run"
    left = run_dir / scratch.SCRATCH / "tmp-of-a-killed-run"
    left.mkdir(parents=True)
    folder = scratch.use(run_dir)
    assert not left.exists() and folder.is_dir()
    with scratch.temporary() as tmp:
        assert os.path.dirname(tmp) == str(folder)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MNIST_BENCH_SCRATCH'])"],
                           env=child_env(), capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(folder)
    scratch.done()
    assert not folder.exists() and scratch.ENV not in os.environ
    with scratch.temporary() as tmp:
        assert os.path.dirname(tmp) == tempfile.gettempdir()
