"""Data path: one training epoch through the harness (device-resident tensors, index slicing)
vs DataLoader(torchvision.datasets.MNIST(..., transform=ToTensor())) with the same model,
optimizer and batch size, measured side by side (interleaved rounds).

    python benchmarks/data_path.py [--rounds 3] [--model mlp] [--root ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.config.build import TrainConfig
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.measure.clocks import wall_time
from bench.training.train import TrainJob, train_model
from models import build_model


def dataloader_epoch(name, root, batch_size, seed, workers) -> float:
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    ds = datasets.MNIST(root=str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers)
    model = build_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = wall_time()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return wall_time() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default="mlp")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: in-process, its default)")
    p.add_argument("--root", type=Path, default=Path(os.environ.get("MNIST_BENCH_DATA", "../shared/data/MNIST/raw")
                                                  ).resolve().parent.parent)
    args = p.parse_args()
    m = resolve_mnist()
    train = make_split(m.train_images, m.train_labels, "minmax", "cpu")
    test = make_split(m.test_images, m.test_labels, "minmax", "cpu", 1000)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, evals_per_epoch=1, warmup_steps=0)
    ratios = []
    for r in range(args.rounds):
        loader_s = dataloader_epoch(args.model, args.root, args.batch_size, r, args.workers)
        result = train_model(TrainJob(args.model, get_backend("cpu-fp32"), train, test, cfg, r, BackendOptions()))
        # the harness drops the partial last batch: scale its time to the full 60,000 images
        harness_s = result.summary["train_s"] * len(train) / (train.train_steps(args.batch_size) * args.batch_size)
        ratios.append(loader_s / harness_s)
        print(f"round {r}: DataLoader+ToTensor epoch {loader_s:.2f} s, harness epoch {harness_s:.2f} s, "
              f"speedup {ratios[-1]:.2f}x")
    print(f"{args.model}: median speedup {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}) over {args.rounds} rounds, batch {args.batch_size}, "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
