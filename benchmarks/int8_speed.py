"""int8 ONNX Runtime engines against the fp32 ONNX Runtime default session, measured side by side.

Each model is trained once (cpu-fp32, the quick preset's recipe), then prepared by each engine
(fp32 export; dynamic int8; static int8 calibrated on the first 512 training images). Latency is
measured in interleaved rounds (fp32, dynamic, static, then the reverse order, ...), each a short
block of calls after its own warm-up; a ratio is taken per round (int8 p50 / fp32 p50), so a drift
of the machine hits both sides of it. Accuracy is on the full 10,000-image test set.

    python benchmarks/int8_speed.py [--rounds 7] [--budget-s 0.3] [--models mlp,cnn]
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch

from bench.config.build import InferConfig, build_config
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.measure.latency import benchmark_call, input_batch
from bench.scheduling.cells import calibration_images
from bench.training.train import TrainJob, train_model

BACKENDS = ("onnxruntime-cpu", "onnxruntime-int8-dynamic", "onnxruntime-int8-static")


def call_floor_ms(batch_size: int, icfg: InferConfig) -> float:
    """p50 of one session.run of a graph that only copies its input (Identity): the per-call cost
    that no engine's arithmetic can remove, measured the same way as the engines."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnx import TensorProto, helper

    from bench.engines.onnxruntime import OrtSession

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 1, 28, 28]) for n in ("input", "logits")]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "floor", io[:1], io[1:])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "identity.onnx"
        onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        session = OrtSession(path, "cpu", BackendOptions())
    x = torch.zeros(batch_size, 1, 28, 28).numpy()
    return benchmark_call(lambda: session.run(x), "cpu", icfg, batch_size)["p50_latency_ms"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget-s", type=float, default=0.3, help="timed calls per round and engine (seconds)")
    p.add_argument("--batch-sizes", default="1,1024")
    args = p.parse_args()
    m = resolve_mnist()
    cfg = build_config({"preset": "quick", "models": args.models, "backends": "cpu-fp32"})
    icfg = InferConfig(budget_s=args.budget_s, warmup_calls=3, min_repeats=5)
    lat_rows, acc_rows = [], []
    for name in cfg.models:
        t = cfg.train_for(name)
        train = make_split(m.train_images, m.train_labels, t.normalization, "cpu", t.limit_train)
        test = make_split(m.test_images, m.test_labels, t.normalization, "cpu")
        model = train_model(TrainJob(name, get_backend("cpu-fp32"), train, test, t, 0, BackendOptions())).model.eval()
        prepared = {}
        for bname in BACKENDS:
            b = get_backend(bname)
            prepared[bname] = b.engine.prepare(model, b, BackendOptions(), calibration_images(train))
            acc = (prepared[bname].logits(test.x).argmax(1) == test.y).float().mean().item() * 100
            facts = prepared[bname].facts
            acc_rows.append({"model": name, "backend": bname, "accuracy_%": acc, "export_s": facts["export_s"],
                             "quantize_s": facts.get("quantize_s", float("nan")), "onnx_MB": facts["onnx_bytes"] / 1e6})
        for bs in map(int, args.batch_sizes.split(",")):
            inputs = {bn: pr.to_input(input_batch(test.x, bs)) for bn, pr in prepared.items()}
            p50 = {bn: [] for bn in BACKENDS}
            for r in range(args.rounds):
                for bn in (BACKENDS if r % 2 == 0 else BACKENDS[::-1]):
                    x, pr = inputs[bn], prepared[bn]
                    p50[bn].append(benchmark_call(lambda: pr.predict(x), pr.clock_device, icfg, bs)["p50_latency_ms"])
            floor = call_floor_ms(bs, icfg)
            for bn in BACKENDS:
                ratios = [a / b for a, b in zip(p50[bn], p50[BACKENDS[0]])]
                above_floor = [(a - floor) / (b - floor) for a, b in zip(p50[bn], p50[BACKENDS[0]])]
                lat_rows.append({"model": name, "batch": bs, "backend": bn, "p50_ms": statistics.median(p50[bn]),
                                 "ratio_vs_fp32": statistics.median(ratios), "ratio_min": min(ratios),
                                 "ratio_max": max(ratios), "call_floor_ms": floor,
                                 "ratio_above_floor": statistics.median(above_floor)})
                print(lat_rows[-1], flush=True)
    acc = pd.DataFrame(acc_rows)
    acc["delta_pts"] = acc["accuracy_%"] - acc.groupby("model")["accuracy_%"].transform("first")
    fmt = lambda v: f"{v:.4g}"
    print(f"\ntorch threads {torch.get_num_threads()}; {args.rounds} interleaved rounds; ratio = int8 p50 / fp32 "
          "ONNX Runtime p50 in the same round (median, min..max over rounds); call_floor_ms: p50 of session.run "
          "on an Identity graph; ratio_above_floor: the same ratio with that floor taken off both sides")
    print(pd.DataFrame(lat_rows).to_string(index=False, float_format=fmt))
    print(acc.to_string(index=False, float_format=fmt))


if __name__ == "__main__":
    main()
