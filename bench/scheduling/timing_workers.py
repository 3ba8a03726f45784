"""A fresh worker process for ``run --processes N``: times its share of a batch size's rounds, so
the rounds sample process-level variation too (memory layout, thread placement), as pyperf's
worker processes do. The run's own process times the first share; N - 1 workers the rest. The
parent hands a worker a spec file (``torch.save``): the model weights each backend runs, one
input batch, the calibration images, the settings and what the engines made that a worker may read
instead of making again (the fp32 ONNX export); the worker prepares every backend itself
and writes its timed calls and the machine's state per round.

    python -m bench.plumbing.child_entry bench.scheduling.timing_workers SPEC OUT

A worker ends with its run: it dies when the run's process does, even by SIGKILL
(``bench.plumbing.children``), a stop asked of the run kills it at once (its share would be thrown
away), and its spec and result files live in a hidden folder (``.workers-*``) of the run's
scratch folder (``bench.plumbing.scratch``), removed when the job ends and, after a killed run,
when the run is resumed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.engines.backends import REFERENCE
from bench.measure.latency import input_batch
from bench.measure.machine import Machine
from bench.measure.rounds import Contender, measure_rounds
from bench.plumbing import scratch
from bench.plumbing.children import child_command, child_env, wait_for
from bench.scheduling.fresh import handed_over, prepare_again
from bench.storage.keys import MachineGroup

WORKER_FILES = ".workers-"  # the prefix of the workers' folder in a run folder


def run_spec(spec: dict) -> dict[str, list[dict]]:
    """Prepare every backend of the spec, then time each batch size's share of rounds."""
    prepared = prepare_again(spec)
    machine, cfg, shift = Machine(), spec["infer_cfg"], spec["first_round"]
    out: dict[str, list[dict]] = {"timings": [], "outcome": [], "machine": []}
    for bs, batch in spec["batches"].items():
        contenders = [Contender(name, lambda p=p, x=p.to_input(batch): p.predict(x), p.clock_device)
                      for name, p in prepared.items()]
        states = measure_rounds(contenders, bs, cfg, machine, group=MachineGroup(spec["model"], "infer", bs).name,
                                process=spec["process"], reference=REFERENCE)
        out["timings"] += [{**row, "round": row["round"] + shift, "backend": c.name, "batch_size": bs}
                           for c in contenders for row in c.rows]
        out["outcome"] += [{"backend": c.name, "batch_size": bs, "cold_first_call_ms": c.cold_first_call_ms,
                            "failure": c.failure} for c in contenders]
        out["machine"] += [{**s, "round": s["round"] + shift, "process": spec["process"]} for s in states]
    return out


@dataclass(frozen=True)
class WorkerJob:
    """What the timing processes of one model share: ``weights``, the model each timed backend was
    prepared from (by backend name, in the rounds' order); ``batch_sizes``, the ones the plan still
    lacks (a resumed run times only those); ``cfg``, the RunConfig."""

    model: str
    weights: dict[str, torch.nn.Module]
    batch_sizes: list[int]
    test_images: torch.Tensor
    calibration: torch.Tensor
    cfg: object



def rounds_in_workers(job: WorkerJob, here: Callable[[int, object], tuple[list[Contender], list[dict]]],
                      on_process: Callable[[int], None] = lambda p: None
                      ) -> dict[int, tuple[list[Contender], list[dict]]]:
    """``run --processes N``: each of ``job.batch_sizes``' rounds spread over N processes, one after
    another: this one first (``here(batch_size, infer_cfg)`` times its share and returns its
    contenders and machine states), then N - 1 fresh workers, which prepare every backend again from
    the same weights. Returns per batch size its contenders (with their timed calls, rounds numbered
    across processes) and the machine's state per round."""
    model, weights, test_images, calibration, cfg = job.model, job.weights, job.test_images, job.calibration, job.cfg
    infer = cfg.infer
    sizes = list(job.batch_sizes)
    shares = [infer.rounds // cfg.processes + (p < infer.rounds % cfg.processes) for p in range(cfg.processes)]
    out = {bs: ([Contender(name, None, "cpu") for name in weights], []) for bs in sizes}
    handed = handed_over(model, weights, cfg, calibration)
    first = 0
    with scratch.temporary(prefix=WORKER_FILES) as tmp:
        for p, share in enumerate(s for s in shares if s):
            part = replace(infer, rounds=share, budget_s=infer.budget_s * share / infer.rounds,
                           min_repeats=max(1, infer.min_repeats * share // infer.rounds),
                           max_repeats=max(1, infer.max_repeats * share // infer.rounds),
                           max_time_s=infer.max_time_s * share / infer.rounds)
            if p == 0:
                res = _here(sizes, part, here)
                _collect(out, res, model, p)
                first = max([share - 1] + [row["round"] for row in res["timings"]]) + 1
                on_process(p)
                continue
            spec, result = Path(tmp) / f"spec{p}.pt", Path(tmp) / f"out{p}.pt"
            torch.save({**handed, "batches": {bs: input_batch(test_images, bs) for bs in sizes}, "infer_cfg": part,
                        "process": p, "first_round": first}, spec)
            proc = subprocess.Popen(child_command("bench.scheduling.timing_workers", str(spec), str(result)),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
            _, stderr = wait_for(proc, forward=False)
            if proc.returncode != 0:
                why = ((stderr or "").strip().splitlines() or ["no output"])[-1][:300]
                for contenders, _ in out.values():
                    for c in contenders:
                        c.failure = c.failure or ("error", f"worker process {p} failed: {why}")
                break
            res = torch.load(result, weights_only=False)
            _collect(out, res, model, p)
            on_process(p)
            # the next process numbers its rounds after this one's last: rounds added for resolution
            # go beyond its share, and a round number must name one process's round only
            first = max([first + share - 1] + [row["round"] for row in res["timings"]]) + 1
    return out


def _here(sizes, part, here) -> dict[str, list[dict]]:
    """The first share, timed in the run's own process, in the shape a worker returns."""
    res: dict[str, list[dict]] = {"timings": [], "outcome": [], "machine": []}
    for bs in sizes:
        contenders, states = here(bs, part)
        res["timings"] += [{**row, "backend": c.name, "batch_size": bs} for c in contenders for row in c.rows]
        res["outcome"] += [{"backend": c.name, "batch_size": bs, "cold_first_call_ms": c.cold_first_call_ms,
                            "failure": c.failure} for c in contenders]
        res["machine"] += [{**s, "process": 0} for s in states]
    return res


def _collect(out: dict, res: dict, model: str, process: int) -> None:
    for bs, (contenders, states) in out.items():
        by_name = {c.name: c for c in contenders}
        for row in res["timings"]:
            if row["batch_size"] == bs:
                keep = {k: v for k, v in row.items() if k not in ("backend", "batch_size")}
                by_name[row["backend"]].rows.append(keep)
        for o in res["outcome"]:
            if o["batch_size"] == bs:
                c = by_name[o["backend"]]
                c.failure = c.failure or o["failure"]
                if process == 0:
                    c.cold_first_call_ms = o["cold_first_call_ms"]
        states += [m for m in res["machine"] if m["group"] == MachineGroup(model, "infer", bs).name]


def main(argv: list[str]) -> int:
    spec_path, out_path = map(Path, argv)
    torch.save(run_spec(torch.load(spec_path, weights_only=False)), out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
