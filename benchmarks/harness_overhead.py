"""Harness overhead: training samples/s through bench.training.train vs a minimal hand-written loop.

Same model, batch size, optimizer and in-memory data; the two are interleaved in one process
(A B, B A, ...) so machine noise hits both alike. Prints per-round ratios and their median.

    python benchmarks/harness_overhead.py [--rounds 5] [--limit-train 12000]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from bench.config.build import TrainConfig
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.measure.clocks import wall_time
from bench.training.train import TrainJob, train_model
from models import build_model


def minimal_epoch(name, train, batch_size, seed) -> float:
    """Samples/s of the plainest loop over the same device-resident tensors."""
    torch.manual_seed(seed)
    model = build_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g)
    steps = train.train_steps(batch_size)  # full batches, as the harness trains
    start = wall_time()
    for i in range(0, steps * batch_size, batch_size):
        idx = perm[i : i + batch_size]
        loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (wall_time() - start)


def harness_epoch(name, train, test, batch_size, seed) -> float:
    cfg = TrainConfig(epochs=1, batch_size=batch_size, evals_per_epoch=1, warmup_steps=0)
    r = train_model(TrainJob(name, get_backend("cpu-fp32"), train, test, cfg, seed, BackendOptions()))
    return train.train_steps(batch_size) * batch_size / r.summary["train_s"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--limit-train", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--models", default="mlp,cnn")
    args = p.parse_args()
    m = resolve_mnist()
    train = make_split(m.train_images, m.train_labels, "minmax", "cpu", args.limit_train)
    test = make_split(m.test_images, m.test_labels, "minmax", "cpu", 1000)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {len(train)} samples, "
          f"batch {args.batch_size}")
    for name in args.models.split(","):
        ratios = []
        for r in range(args.rounds):
            # alternate the order (A B, B A, ...) so drift on a shared machine hits both alike
            if r % 2 == 0:
                minimal = minimal_epoch(name, train, args.batch_size, r)
                harness = harness_epoch(name, train, test, args.batch_size, r)
            else:
                harness = harness_epoch(name, train, test, args.batch_size, r)
                minimal = minimal_epoch(name, train, args.batch_size, r)
            ratios.append(harness / minimal)
            print(f"{name} round {r}: harness {harness:,.0f} samples/s, minimal {minimal:,.0f} samples/s, "
                  f"ratio {ratios[-1]:.3f}")
        print(f"{name}: median ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
              f"max {max(ratios):.3f}) over {args.rounds} rounds")


if __name__ == "__main__":
    main()
