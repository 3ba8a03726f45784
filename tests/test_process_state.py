"""The process state: the allocator option, what meta.json records of it, and the machine's
per-round counters of the run's own process."""

import json
import mmap
import os
import subprocess
import sys

import pandas as pd
import pytest

from bench import BenchError
from bench.config.build import build_config
from bench.measure import process_state
from bench.measure.machine import PROCESS_COUNTERS, Machine


def test_allocator_defaults_to_tuned_and_refuses_unknown_names():
    assert build_config({}).allocator == "tuned"
    assert build_config({"allocator": "system"}).allocator == "system"
    with pytest.raises(BenchError, match="allocator must be one of tuned, system, jemalloc, tcmalloc"):
        build_config({"allocator": "hoard"})


def test_tuned_fixes_glibc_thresholds_for_this_process_and_its_children():
    code = ("import os; from bench.measure import process_state as p; p.apply('tuned'); "
            "print(os.environ['MALLOC_MMAP_THRESHOLD_'], os.environ['MALLOC_TRIM_THRESHOLD_'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(256 << 20), str(512 << 20)]


def test_describe_records_allocator_openmp_and_threads():
    state = process_state.describe("tuned")
    assert state["allocator"] == "tuned"
    assert state["allocator_settings"] == {"mmap_threshold_bytes": 256 << 20, "trim_threshold_bytes": 512 << 20}
    assert state["torch_threads"] >= 1 and state["cpus_allowed"] >= 1
    assert {"openmp_library", "openmp_env", "ld_preload", "torch_interop_threads"} <= set(state)
    line = process_state.summary_line(state)
    assert line.startswith("tuned (") and "256 MiB" in line and "torch threads" in line


def test_a_missing_preloaded_allocator_is_refused_with_what_to_install(monkeypatch):
    monkeypatch.setattr(process_state, "library_path", lambda allocator: None)
    with pytest.raises(BenchError, match=r"apt-get install libjemalloc2.*--allocator tuned or system"):
        process_state.check_available("jemalloc")


@pytest.mark.skipif(process_state.library_path("jemalloc") is None, reason="libjemalloc2 not installed")
def test_a_preloaded_allocator_runs_in_a_relaunched_process():
    code = ("from bench.measure import process_state as p; import sys; "
            "sys.exit(p.relaunch('jemalloc', ['defaults']))")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    check = "from bench.measure import process_state as p; print(p.loaded('jemalloc'))"
    lib = str(process_state.library_path("jemalloc"))
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            env={**env, "LD_PRELOAD": lib})
    assert loaded.stdout.strip() == "True"
    assert not process_state.needs_relaunch("tuned")


def test_the_allocator_is_checked_and_applied_once_per_process(monkeypatch):
    """``enter`` (the command's way in) checks and applies; the run's own ``apply`` then finds it done."""
    checks = []
    monkeypatch.setattr(process_state, "_APPLIED", set())
    monkeypatch.setattr(process_state, "check_available", lambda a: checks.append(a))
    assert process_state.enter("system", ["run"]) is None
    process_state.apply("system")
    process_state.apply("system")
    assert checks == ["system"]


def test_machine_rows_count_the_process_own_faults_per_round():
    m = Machine()
    first = m.round("g", 0)
    assert all(pd.isna(first[k]) for k in PROCESS_COUNTERS)  # open until the next round or close()
    # touching 8 MiB of a fresh anonymous mapping faults its pages in, whatever the heap's state
    # (a bytearray may be served from pages the process already touched under a raised mmap threshold)
    buf = mmap.mmap(-1, 8 << 20)
    for offset in range(0, len(buf), 4096):
        buf[offset] = 1
    second = m.round("g", 1)
    m.close()
    buf.close()
    assert first["minor_faults"] >= 1000
    assert all(second[k] >= 0 for k in PROCESS_COUNTERS)


def test_run_meta_records_process_state(tiny_run):
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert meta["process_state"]["allocator"] == "tuned"
    assert meta["process_state"]["torch_threads"] == 1
    machine = pd.concat([pd.read_parquet(p) for p in (tiny_run / "cells").glob("*/machine.parquet")])
    assert machine.minor_faults.notna().all() and (machine.minor_faults >= 0).all()
