"""Landscape speed: a G x G loss surface around trained-size weights on the first N training
images, batched (bench.dynamics.landscape.LandscapeEvaluator.surface) vs point-by-point (one full
forward pass per grid point), interleaved rounds in one process. Also checks they agree.

    python benchmarks/landscape_speed.py [--model mlp] [--grid 25] [--subset 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bench.data.mnist import make_split, resolve_mnist
from bench.dynamics.landscape import LandscapeEvaluator, combine, filter_normalized_direction, params_of
from bench.measure.clocks import Stopwatch
from models import build_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp")
    p.add_argument("--grid", type=int, default=25)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--chunk", type=int, default=None, help="points per vmapped call (default: device's)")
    args = p.parse_args()
    m = resolve_mnist()
    train = make_split(m.train_images, m.train_labels, "minmax", args.device, args.subset)
    torch.manual_seed(0)
    model = build_model(args.model).to(args.device).eval()
    ev = LandscapeEvaluator(model, train.x, train.y, chunk=args.chunk)
    c = params_of(model)
    g = torch.Generator().manual_seed(0)
    d1, d2 = filter_normalized_direction(c, g), filter_normalized_direction(c, g)
    axis = torch.linspace(-1, 1, args.grid)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    coords = list(zip(gx.reshape(-1).tolist(), gy.reshape(-1).tolist()))

    def batched():
        return ev.surface(c, d1, d2, axis, axis)[2].reshape(-1)

    def pointwise():
        return ev.evaluate_points([combine(c, [d1, d2], [a, b]) for a, b in coords])[0]

    batched(), pointwise()  # warm-up (allocations, kernel selection)
    ratios = []
    for r in range(args.rounds):
        times = {}
        for name, fn in (("point-by-point", pointwise), ("batched", batched)):
            with Stopwatch(args.device) as sw:
                out = fn()
            times[name] = sw.seconds
            times[name + "_out"] = out
        diff = (times["batched_out"] - times["point-by-point_out"]).abs().max().item()
        ratios.append(times["point-by-point"] / times["batched"])
        print(f"round {r}: point-by-point {times['point-by-point']:.2f} s, batched {times['batched']:.2f} s, "
              f"speedup {ratios[-1]:.2f}x, max |loss diff| {diff:.1e}", flush=True)
    print(f"{args.model} {args.grid}x{args.grid} on {args.subset} samples ({args.device}, "
          f"{torch.get_num_threads()} threads): median speedup {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
