"""CNN time to 99% test accuracy: the default recipe vs plain Adam(lr=1e-3), batch 128, fp32,
constant rate, trained side by side in one process on the same backend.

Training time only (evaluation excluded); the stopping check runs on the test set.

    python benchmarks/time_to_accuracy.py [--backend cpu-fp32] [--seeds 0]
"""

from __future__ import annotations

import argparse

from bench.config.build import build_config, with_train
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.training.train import TrainJob, train_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="cpu-fp32")
    p.add_argument("--baseline-backend", default=None, help="default: same as --backend")
    p.add_argument("--seeds", default="0")
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--evals-per-epoch", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's schedule length")
    args = p.parse_args()
    backend = get_backend(args.backend)
    baseline_backend = get_backend(args.baseline_backend or args.backend)
    for b in (backend, baseline_backend):
        if b.unavailable_reason():
            print(f"skipped: {b.name}: {b.unavailable_reason()}")
            return
    m = resolve_mnist()
    changes = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs}.items()
               if v is not None}
    recipe = with_train(build_config({"preset": "full", "models": "cnn"}), evals_per_epoch=args.evals_per_epoch,
                        **changes).train_for("cnn")
    baseline = with_train(build_config({"preset": "full", "models": "cnn"}), schedule="constant", lr=1e-3,
                          batch_size=128, epochs=args.max_epochs,
                          evals_per_epoch=args.evals_per_epoch).train_for("cnn")
    print(f"recipe:   {recipe}\nbaseline: {baseline}")
    for seed in map(int, args.seeds.split(",")):
        times = {}
        for label, cfg, b in (("baseline", baseline, baseline_backend), ("recipe", recipe, backend)):
            train = make_split(m.train_images, m.train_labels, cfg.normalization, b.device)
            test = make_split(m.test_images, m.test_labels, cfg.normalization, b.device)
            r = train_model(TrainJob("cnn", b, train, test, cfg, seed, BackendOptions())).summary
            times[label] = r["time_to_accuracy_s"]
            print(f"seed {seed} {label} on {b.name}: time to {cfg.target_accuracy:.0%} = "
                  f"{r['time_to_accuracy_s']:.2f} s training time, final accuracy {r['test_accuracy']:.4f}, "
                  f"{r['epochs_run']} epochs, {r['train_samples_per_s']:,.0f} samples/s", flush=True)
        print(f"seed {seed}: recipe / baseline time-to-99% = {times['recipe'] / times['baseline']:.3f}")


if __name__ == "__main__":
    main()
