"""A fresh worker process for ``run --processes N``: times its share of a batch size's rounds, so
the rounds sample process-level variation too (memory layout, thread placement), as pyperf's
worker processes do. The parent hands it a spec file (``torch.save``): the model weights each
backend runs, one input batch, the calibration images, and the settings; the worker prepares
every backend itself and writes its timed calls and the machine's state per round.

    python -m bench.worker SPEC OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from bench.backends import BACKENDS
from bench.measure.machine import Machine
from bench.measure.rounds import Contender, measure_rounds
from bench.train import build_trainable


def run_spec(spec: dict) -> dict[str, list[dict]]:
    """Prepare every backend of the spec, then time each batch size's share of rounds."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    prepared = {}
    for name, state in spec["weights"].items():
        if name not in BACKENDS:
            raise SystemExit(f"backend {name} is not registered in a fresh process (a backend added at run time "
                             "cannot be timed with --processes > 1)")
        b = BACKENDS[name]
        b.configure(spec["options"])
        model = build_trainable(spec["model"], b, spec["options"], spec["seed"])
        model.load_state_dict(state)
        prepared[name] = b.engine.prepare(model, b, spec["options"], spec["calibration"])
    machine, cfg, shift = Machine(), spec["infer_cfg"], spec["first_round"]
    out: dict[str, list[dict]] = {"timings": [], "outcome": [], "machine": []}
    for bs, batch in spec["batches"].items():
        contenders = [Contender(name, lambda p=p, x=p.to_input(batch): p.predict(x), p.clock_device)
                      for name, p in prepared.items()]
        states = measure_rounds(contenders, bs, cfg, machine, group=f"{spec['model']} infer bs{bs}",
                                process=spec["process"])
        out["timings"] += [{**row, "round": row["round"] + shift, "backend": c.name, "batch_size": bs}
                           for c in contenders for row in c.rows]
        out["outcome"] += [{"backend": c.name, "batch_size": bs, "cold_first_call_ms": c.cold_first_call_ms,
                            "failure": c.failure} for c in contenders]
        out["machine"] += [{**s, "round": s["round"] + shift, "process": spec["process"]} for s in states]
    return out


def main(argv: list[str]) -> int:
    spec_path, out_path = map(Path, argv)
    torch.save(run_spec(torch.load(spec_path, weights_only=False)), out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
