"""`--preset full` on cpu-fp32 for several seeds: final test accuracy, min and mean per model.

    python benchmarks/accuracy_seeds.py [--seeds 0,1,2] [--out results/accuracy-seeds]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.config.build import build_config
from bench.scheduling.runner import Runner
from bench.storage.results import read_run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--out", type=Path, default=Path("results/accuracy-seeds"))
    args = p.parse_args()
    rows = []
    for seed in args.seeds.split(","):
        cfg = build_config({"preset": "full", "models": args.models, "backends": "cpu-fp32", "seed": seed,
                            "batch_sizes": "1", "budget_s": "0.1", "out": str(args.out)})
        run_dir = Runner(cfg, argv=["benchmarks/accuracy_seeds.py"], progress=False).run()
        s = read_run(run_dir)["summary"]
        t = s[s.phase == "train"]
        for _, r in t.iterrows():
            rows.append({"seed": int(seed), "model": r.model, "test_accuracy": r.test_accuracy,
                         "epochs_run": r.epochs_run, "time_to_accuracy_s": r.time_to_accuracy_s,
                         "run_dir": str(run_dir)})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    print(df.groupby("model").test_accuracy.agg(["min", "mean", "max"]).mul(100).round(2).to_string())


if __name__ == "__main__":
    main()
