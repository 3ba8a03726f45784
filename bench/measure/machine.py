"""The machine's state while rounds run: a control workload (a fixed matrix multiply, the speed
index of the machine over a run), load average, CPU frequency, CPU steal time (on a VM, the usual
cause of drift) and, with CUDA, GPU clock and temperature. Read once per round, never inside a
timed region."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.measure.clocks import CpuClock, time_calls, timestamp

CONTROL_N = 384  # a 384 x 384 fp32 matmul: a few milliseconds on one or two cores
STEAL_WARN = 0.05  # warn when more than 5% of CPU time in a round was stolen by the hypervisor
DRIFT_WARN = 0.10  # warn when the control workload's fastest call spreads by more than 10% (CV) over rounds
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's units per second
OTHERS_WARN = 0.5  # warn when other processes kept this many cores busy and the calls' threads needed them
FAULTS_WARN_BYTES = 64 << 20  # warn when the run's own process faults in over 64 MiB of pages per round (median)
STALL_FACTOR, STALL_WARN = 3.0, 0.20  # warn when a round's median control call > 3x its fastest in > 20% of rounds


class Machine:
    """Samples the machine's state at each round: ``machine.round(group, index)`` returns one row."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self._a = torch.randn(CONTROL_N, CONTROL_N, generator=g)
        self._b = torch.randn(CONTROL_N, CONTROL_N, generator=g)
        torch.mm(self._a, self._b)  # the first call initialises the BLAS library: not a sample
        self._cpu = _cpu_times()
        self._open: tuple[dict, dict, tuple] | None = None  # the last row, this process's counters at its start
        # and the machine's busy CPU seconds, this process's and the clock then (``_others``)

    def control(self, calls: int = 5) -> dict:
        """The control matmul timed ``calls`` times after one untimed call: the median (what a
        backend would have met, stalls included) and the fastest call (the machine's speed with the
        stalls left out: what ``compare --normalize`` scales by), in milliseconds."""
        torch.mm(self._a, self._b)
        device_s, _ = time_calls(lambda: torch.mm(self._a, self._b), CpuClock(), calls)
        return {"control_ms": float(np.median(device_s)) * 1e3, "control_min_ms": float(np.min(device_s)) * 1e3}

    def round(self, group: str, index: int) -> dict:
        cpu = _cpu_times()
        steal = float("nan")
        if cpu is not None and self._cpu is not None:
            delta = cpu - self._cpu
            steal = float(delta[7] / delta.sum()) if delta.sum() > 0 and len(delta) > 7 else float("nan")
        self._cpu = cpu
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        busy = _busy_now(cpu)  # one reading of /proc/stat: the last row's end and this one's start
        self.close(busy)
        row = {"group": group, "round": index, "timestamp_s": timestamp(), **self.control(),
               "loadavg_1m": load, "cpu_mhz": _cpu_mhz(), "steal_frac": steal, **_gpu_state(),
               **dict.fromkeys(PROCESS_COUNTERS, float("nan")), "other_cores": float("nan")}
        self._open = (row, _process_counters(), busy)
        return row

    def close(self, busy: tuple[float, float, float] | None = None) -> None:
        """Fill the open row's own-process counters: page faults and context switches of this
        process from that row's start to now (the round it began; ``measure_rounds`` closes the
        last one). They tell the run's own interference (faulting buffers in, its threads
        descheduled) from the VM's (steal). ``busy``: the machine's busy time read at the next
        round's start (``_busy_now``), where that round has read it."""
        if self._open is None:
            return
        row, start, started = self._open
        now = _process_counters()
        end = _busy_now() if busy is None else busy
        row.update({k: float(now[k] - start[k]) for k in PROCESS_COUNTERS}, other_cores=_others(started, end))
        self._open = None


# getrusage(RUSAGE_SELF) fields per round: every thread of this process, children excluded
PROCESS_COUNTERS = {"minor_faults": "ru_minflt", "major_faults": "ru_majflt",
                    "voluntary_switches": "ru_nvcsw", "involuntary_switches": "ru_nivcsw"}


def _busy_now(cpu: np.ndarray | None = None) -> tuple[float, float, float]:
    """The machine's busy CPU seconds (every core: user, nice, system, irq, softirq, from ``cpu``:
    /proc/stat's times, read now where not given; NaN without them), this process's (every thread),
    and the monotonic clock."""
    cpu = _cpu_times() if cpu is None else cpu
    machine = float(cpu[[0, 1, 2, 5, 6]].sum()) / CLOCK_TICKS if cpu is not None and len(cpu) > 6 else float("nan")
    own = resource.getrusage(resource.RUSAGE_SELF)
    return machine, own.ru_utime + own.ru_stime, time.monotonic()


def _others(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """How many cores other processes kept busy between two ``_busy_now`` readings: the machine's
    busy CPU seconds less this process's, over the wall seconds between."""
    wall = end[2] - start[2]
    if wall <= 0:
        return float("nan")
    return max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / wall)


def _process_counters() -> dict[str, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {k: getattr(usage, field) for k, field in PROCESS_COUNTERS.items()}


def warnings_for(machine: pd.DataFrame, cpu_count: int | None = None, threads: int | None = None) -> list[str]:
    """Plain-language warnings when the machine was busy or drifting during the rounds (``threads``:
    the threads each call ran, for what other processes' load does to them)."""
    out = []
    if machine.empty:
        return out
    steal = machine.steal_frac.max()
    if steal == steal and steal > STEAL_WARN:
        out.append(f"CPU steal time reached {steal:.0%} of a round: the VM's host was busy; timings may drift")
    fastest = machine.control_min_ms if "control_min_ms" in machine else machine.control_ms
    cv = fastest.std() / fastest.mean() if len(fastest) > 1 and fastest.mean() > 0 else 0.0
    if cv > DRIFT_WARN:
        out.append(f"the machine's speed drifted: the control workload's fastest call took {fastest.min():.2f} to "
                   f"{fastest.max():.2f} ms across rounds (CV {cv:.0%}); paired ratios cancel drift, single "
                   "figures do not")
    stalled = (machine.control_ms > STALL_FACTOR * fastest).mean()
    if stalled > STALL_WARN:
        out.append(f"the machine stalled: in {stalled:.0%} of rounds the control workload's median call took over "
                   f"{STALL_FACTOR:g}x its fastest (threads descheduled); round medians absorb short stalls, "
                   "paired ratios the rest")
    faults = machine.minor_faults.dropna() if "minor_faults" in machine else pd.Series(dtype=float)
    if len(faults) and faults.median() * PAGE_BYTES > FAULTS_WARN_BYTES:
        median_mib, max_mib = faults.median() * PAGE_BYTES / 2**20, faults.max() * PAGE_BYTES / 2**20
        out.append(f"the run itself page-faulted {median_mib:.0f} MiB per round (median; up to {max_mib:.0f} MiB): "
                   "its buffers were mapped afresh instead of reused, which is this process's state, not the "
                   "machine's; its figures include that cost (see --allocator)")
    cpus = cpu_count or os.cpu_count() or 1
    load = machine.loadavg_1m.max()
    if load == load and load > 1.5 * cpus:
        out.append(f"the machine was busy: load average up to {load:.1f} on {cpus} CPUs")
    return out + _crowded(machine, cpus, threads)


def _crowded(machine: pd.DataFrame, cpus: int, threads: int | None) -> list[str]:
    """Other processes on the cores a call's threads need: each parallel region waits for its thread
    that shares a core, and the call's time flips between speeds many times apart (idle: none)."""
    others = machine.other_cores.median() if "other_cores" in machine else float("nan")
    if not threads or not others >= OTHERS_WARN or threads <= cpus - others + 0.5:
        return []
    free = max(1, int(cpus - others + 0.5))
    return [f"other processes kept {others:.1f} of the {cpus} cores busy while the rounds ran (median of rounds) "
            f"and each call ran {threads} threads: a call waits for its thread that shares a core, so its time flips "
            f"between speeds and intervals widen; --threads {free} gives each thread a core of its own"]


def _cpu_times() -> np.ndarray | None:
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
        return np.array([float(v) for v in first[1:]])
    except (OSError, IndexError, ValueError):
        return None


def _cpu_mhz() -> float:
    try:
        values = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("cpu MHz")]
        return float(np.mean(values)) if values else float("nan")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _gpu_state() -> dict:
    """SM clock and temperature of the current GPU: through NVML (torch.cuda, when pynvml is
    installed), else one ``nvidia-smi`` query; NaN when neither answers."""
    if not torch.cuda.is_available():
        return {}
    try:
        return {"gpu_clock_mhz": float(torch.cuda.clock_rate()), "gpu_temp_c": float(torch.cuda.temperature())}
    except Exception:  # noqa: BLE001 - NVML missing or not answering: try nvidia-smi below
        pass
    smi = shutil.which("nvidia-smi")
    try:
        out = subprocess.run([smi, "--query-gpu=clocks.sm,temperature.gpu", "--format=csv,noheader,nounits",
                              "-i", str(torch.cuda.current_device())], capture_output=True, text=True, timeout=5)
        clock, temp = (float(v) for v in out.stdout.strip().split(","))
        return {"gpu_clock_mhz": clock, "gpu_temp_c": temp}
    except (TypeError, OSError, ValueError, subprocess.SubprocessError):
        return {"gpu_clock_mhz": float("nan"), "gpu_temp_c": float("nan")}
