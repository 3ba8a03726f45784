"""A verdict's explanation checked by removing its cause. The breakdown (bench/measure/breakdown.py)
says cpu-bf16 (autocast) is slower than cpu-fp32 for the MLP at small batches because of casts:
autocast casts the fp32 weights (and the input) to bf16 on every call. Remove the cause: hold the
weights in bf16 once (``model.bfloat16()``) and feed bf16 input, so no call casts anything, and
measure the ratio to cpu-fp32 again, in the same interleaved rounds as the harness's timing.

    python -m benchmarks.breakdown_check [--model mlp] [--batch-sizes 1,32,256]

Prints, per batch size, each variant's paired ratio to cpu-fp32 with its 95% interval and the
variant's breakdown (µs per call by category)."""

from __future__ import annotations

import argparse
import copy

import pandas as pd
import torch

from bench.config.types import InferConfig
from bench.engines.backends import get_backend
from bench.engines.base import BackendOptions
from bench.engines.eager import torch_prepared
from bench.measure.breakdown import CATEGORIES, breakdown
from bench.measure.figures import time_ratio
from bench.measure.rounds import Contender, measure_rounds
from models import build_model


def _precast(model: torch.nn.Module):
    """The model's weights held in bf16 once: each call runs bf16 without a cast of its weights."""
    net = copy.deepcopy(model).bfloat16().eval()

    def predict(x):
        with torch.no_grad():
            return net(x)

    from bench.engines.base import Prepared

    return Prepared(predict, "cpu", to_input=lambda x: x.bfloat16())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch-sizes", default="1,32,256")
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    torch.manual_seed(0)
    model = build_model(args.model).eval()
    fp32, bf16 = get_backend("cpu-fp32"), get_backend("cpu-bf16")
    variants = {"cpu-fp32": fp32.engine.prepare(copy.deepcopy(model), fp32, BackendOptions(), None),
                "cpu-bf16 (autocast)": torch_prepared(copy.deepcopy(model).eval(), bf16),
                "bf16 weights, no casts": _precast(model)}
    cfg = InferConfig(rounds=args.rounds, budget_s=0.6, resolution_pct=0, min_repeats=args.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        images = torch.rand(bs, 1, 28, 28)
        inputs = {n: v.to_input(images) for n, v in variants.items()}
        contenders = [Contender(n, lambda v=v, x=inputs[n]: v.predict(x), "cpu") for n, v in variants.items()]
        measure_rounds(contenders, bs, cfg)
        medians = {c.name: pd.DataFrame(c.rows).groupby("round").seconds.median() for c in contenders}
        print(f"\nbatch {bs}:")
        for c in contenders:
            r = time_ratio(medians["cpu-fp32"].to_dict(), medians[c.name].to_dict())
            table = breakdown(variants[c.name], inputs[c.name], float(medians[c.name].median()))
            cats = table[table.kind == "category"].set_index("name").seconds_per_call * 1e6
            parts = ", ".join(f"{k} {cats[k]:.1f}" for k in CATEGORIES if cats[k] >= 0.05)
            print(f"  {c.name:<24} {r['ratio']:.2f}x fp32 [{r['ratio_low']:.2f}, {r['ratio_high']:.2f}]  "
                  f"call {medians[c.name].median() * 1e6:8.1f} µs | µs per call: {parts}")


if __name__ == "__main__":
    main()
