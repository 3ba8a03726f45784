"""``mnist-bench run --launcher torchrun``: data-parallel training cells, one torchrun job per
world size (``--scaling 1,2,...``: one after another on this node), each rank running
``bench.distributed.rank``. This process owns the run folder: it opens it, launches and watches
torchrun, turns a failed job into one line naming the rank (or the rendezvous) and error rows for
the cells it did not write, and closes the folder. Cells already written are kept."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import torch

from bench import ConfigError
from bench.config.build import RunConfig
from bench.data.mnist import resolve_mnist
from bench.distributed.phase import DISTRIBUTED  # noqa: F401 - registers the phase its plan is made of
from bench.engines.backends import REFERENCE, catalog, get_backend, probe, trainers
from bench.phase import catalog as phase_catalog
from bench.phase import plan
from bench.plumbing import console, signals
from bench.plumbing.children import child_env, wait_for
from bench.plumbing.signals import graceful_stop
from bench.storage.keys import CellKey
from bench.storage.run_folder import close_run, open_run

DIST_FAILED_EXIT = 4


def per_rank_batch(cfg: RunConfig, model: str, world: int) -> int:
    batch = cfg.train_for(model).batch_size
    return batch if cfg.distributed.scaling_batch == "per-rank" else batch // world


def check(cfg: RunConfig, cuda_devices: int | None = None) -> None:
    """Refuse, before anything runs, what cannot launch: backends on both devices, more ranks per
    node than GPUs, a global batch that does not split evenly, a rendezvous port already taken."""
    d = cfg.distributed
    devices = {get_backend(b).device for b in cfg.backends}
    if len(devices) > 1:
        raise ConfigError(f"a torchrun run trains on one device kind; {', '.join(cfg.backends)} mix cpu and cuda "
                          "(run them as two runs)")
    if devices == {"cuda"}:
        have = torch.cuda.device_count() if cuda_devices is None else cuda_devices
        most = max(d.scaling or (d.nproc_per_node,))
        if most > have:
            raise ConfigError(f"{most} ranks per node on CUDA need {most} GPUs; this node has {have} "
                              f"(legal values for --nproc-per-node / --scaling: 1-{max(have, 1)})")
    for world in d.world_sizes:
        for model in cfg.models:
            batch = cfg.train_for(model).batch_size
            if d.scaling_batch == "global" and batch % world:
                raise ConfigError(f"the global batch {batch} of {model} does not split over {world} ranks; give a "
                                  f"--batch-size divisible by {world}, or --scaling-batch per-rank")
    if d.rdzv_endpoint and d.nnodes == 1:
        host, port = split_endpoint(d.rdzv_endpoint)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError as e:
                raise ConfigError(f"rendezvous endpoint {host}:{port} cannot be used: {e.strerror or e} "
                                  "(choose a free port, or leave --rdzv-endpoint out on one node)") from None


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


# torchrun (``python -m torch.distributed.run``) in a process that dies with the run's (its ranks die with it)
TORCHRUN = ("from bench.plumbing.children import die_with_parent; die_with_parent(); import runpy; "
            "runpy.run_module('torch.distributed.run', run_name='__main__', alter_sys=True)")


def torchrun_command(cfg: RunConfig, run_dir: Path, world: int) -> list[str]:
    d = cfg.distributed
    nproc = world if d.scaling else d.nproc_per_node
    cmd = [sys.executable, "-c", TORCHRUN, f"--nproc-per-node={nproc}", f"--nnodes={d.nnodes}",
           "--max-restarts=0", "--monitor-interval=0.5"]
    if d.rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={d.rdzv_endpoint}", "--rdzv-id=mnist-bench",
                f"--rdzv-conf=join_timeout={max(1, round(d.dist_timeout_s))},"
                f"read_timeout={max(1, round(d.dist_timeout_s))}"]
    else:
        cmd += ["--standalone"]
    return cmd + ["-m", "bench.distributed.rank", str(run_dir), "--suffix", f"ws{world}"]


_FAILURE = re.compile(r"host\s*:\s*(\S+)\s*\n\s*rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)\s*\n\s*"
                      r"exitcode\s*:\s*(-?\d+)")


def _how(code: int) -> str:
    if code < 0 and -code in {s.value for s in signal.Signals}:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def diagnose(output: str, cfg: RunConfig, world: int) -> str:
    """One line for a torchrun job that failed: the rank that died first and how, or the
    rendezvous that could not be reached, or the job's last error line."""
    d = cfg.distributed
    if d.rdzv_endpoint and re.search(r"Rendezvous(Timeout|Connection|Closed)Error|DistNetworkError|"
                                     r"timed out|Connection refused|EADDRINUSE|address already in use", output):
        host, port = split_endpoint(d.rdzv_endpoint)
        joined = "" if d.nnodes == 1 else f" ({d.nnodes} nodes expected)"
        return (f"the rendezvous at {host}:{port} could not be completed within {d.dist_timeout_s:g} s{joined}: the "
                "host or port is unreachable, in use by something else, or a node did not start")
    ended = {}
    for m in _FAILURE.finditer(output):  # torchrun's failure report: every rank that failed
        ended.setdefault(int(m.group(2)), (m.group(1), int(m.group(3)), int(m.group(4))))
    if ended:
        # the rank that failed on its own first: a rank that aborted (SIGABRT) because a peer's
        # connection closed, or that torchrun stopped (SIGTERM), is a consequence, not the cause
        def consequence(r: int) -> tuple[bool, bool]:
            # SIGTERM: torchrun stopping a survivor; SIGABRT or a lost connection: often a survivor too
            return ended[r][2] == -15, ended[r][2] == -6 or bool(re.search(
                rf"\[rank{r}\]:.*(Connection closed by peer|Connection reset by peer|Broken pipe)", output))

        order = sorted(ended, key=lambda r: (*consequence(r), r))
        culprit, others = order[0], order[1:]
        host, local, code = ended[culprit]
        then = "; ".join(f"rank {r} then ended ({_how(ended[r][2])})" for r in others)
        waited = re.search(rf"\[rank{culprit}\]:.*(Timed out|timed out|timeout)", output)
        why = (f": a collective timed out after {d.dist_timeout_s:g} s, so a peer stopped answering (hung, stopped "
               "or cut off)") if waited else ""
        return (f"rank {culprit} (local rank {local} on {host}) of {world} ended ({_how(code)}){why}"
                f"{'; ' + then if then else ''}; torchrun stopped the job")
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    return (errors[-1].strip() if errors else "torchrun failed")[:300]


def run_distributed(cfg: RunConfig, argv: list[str] | None) -> tuple[Path, list[str]]:
    """The data-parallel run; returns its folder and the one-line failures (empty: all ended ok)."""
    with graceful_stop():
        missing = [f"{b.name}: {reason}" for b, reason in probe(cfg.backends) if reason]
        if missing:
            raise ConfigError(f"a torchrun run needs every backend on every rank; unavailable here: "
                              f"{'; '.join(missing)}")
        check(cfg)
        mnist = resolve_mnist(cfg.data_dir)  # verified (and cached) once, before the ranks read it
        planned = plan(cfg, trainers(), REFERENCE)
        writer, meta = open_run(cfg, argv, mnist, stored={"catalog": {**catalog(), "phases": phase_catalog()},
                                                           "plan": [k.id for k in planned]})
        meta["distributed"] = {"launcher": "torchrun", "nnodes": cfg.distributed.nnodes,
                               "nproc_per_node": cfg.distributed.nproc_per_node,
                               "rdzv_endpoint": cfg.distributed.rdzv_endpoint,
                               "world_sizes": list(cfg.distributed.world_sizes),
                               "scaling_batch": cfg.distributed.scaling_batch,
                               "dist_backend": "nccl" if get_backend(cfg.backends[0]).device == "cuda" else "gloo"}
        failures: list[str] = []
        status = "interrupted"
        try:
            for world in cfg.distributed.world_sizes:
                failure = _launch(cfg, writer.run_dir, world)
                if failure:
                    failures.append(failure)
                    for key in (k for k in planned if k.suffix == f"ws{world}"):
                        if not (writer.run_dir / "cells" / key.id).exists():
                            row = {"status": "error", "reason": failure, "world_size": world}
                            writer.write(key.model, get_backend(key.backend), key.phase,
                                         {"summary": pd.DataFrame([row])}, suffix=key.suffix)
                    break
            status = "complete"
        finally:
            reports = [json.loads(p.read_text()) for p in sorted(writer.run_dir.glob("ranks-*.json"))]
            meta["distributed"]["node_reports"] = reports
            meta["distributed"]["results_here"] = any(r.get("wrote_results") for r in reports) or not reports
            meta["distributed"]["rank_layout"] = rank_layout(writer.run_dir)
            close_run(writer, meta, status, [])
    return writer.run_dir, failures


def rank_layout(run_dir: Path) -> dict[str, list[dict]]:
    """Per world size: every rank's host, node, local rank and pid, from the cells rank 0 wrote."""
    layout = {}
    for ranks in sorted((run_dir / "cells").glob("*/ranks.parquet")):
        world = CellKey.parse(ranks.parent.name).suffix  # ws<N>
        rows = pd.read_parquet(ranks, columns=["rank", "node_rank", "local_rank", "host", "pid"])
        layout.setdefault(world, rows.to_dict("records"))
    return layout


def _launch(cfg: RunConfig, run_dir: Path, world: int) -> str | None:
    """One torchrun job; its output goes to ``torchrun-ws<N>.log`` in the run folder (rank 0's lines
    also to the terminal). Returns None when it ended ok, else the one-line diagnosis."""
    log_path = run_dir / f"torchrun-ws{world}.log"
    command = torchrun_command(cfg, run_dir, world)
    lines: list[str] = []
    start = time.perf_counter()
    with open(log_path, "w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                       text=True, bufsize=1, env=child_env()) as proc:
        def pump() -> None:
            for line in proc.stdout:
                log.write(line)
                lines.append(line)
                if line.startswith("rank 0:") or console.is_verbose():
                    console.info(line.rstrip())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            wait_for(proc, forward=True, collect=False)  # a stop reaches torchrun at once: it stops its ranks
            reader.join()
            signals.check()  # then the run stops, torchrun's cells kept
            code = proc.returncode
        except BaseException:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)  # its last lines, before the log closes
            raise
    console.info(f"torchrun world size {world}: {'done' if code == 0 else 'failed'} in "
                 f"{time.perf_counter() - start:.1f} s")
    if code == 0:
        return None
    reason = diagnose("".join(lines), cfg, world)
    print(f"error: world size {world}: {reason}; log: {log_path}", file=sys.stderr)
    return reason
