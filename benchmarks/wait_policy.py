"""The MLP at batch 1 and 32, in one fresh process: the harness's median call for cpu-bf16 and
onnxruntime-cpu interleaved with cpu-fp32 (as a run times them), the same backend timed alone by
the harness, and the independent clock of ``benchmarks.process_state``. Run it as is and with
``OMP_WAIT_POLICY=PASSIVE`` to see what libgomp's wait policy costs each backend:

    python -m benchmarks.wait_policy
    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.wait_policy

Prints one JSON list of rows (env, batch size, backend, interleaved_ms, alone_ms, independent_ms).
"""

from __future__ import annotations

import json
import os


def main() -> None:
    from bench.measure import process_state

    process_state.apply("tuned")  # before torch: the state every run's process is in
    import pandas as pd
    import torch
    from torch.utils import benchmark as tb

    from bench.config.types import InferConfig
    from bench.data.mnist import make_split, resolve_mnist
    from bench.engines import BackendOptions
    from bench.engines.backends import get_backend
    from bench.measure.figures import headline_rate
    from bench.measure.latency import input_batch
    from bench.measure.rounds import Contender, measure_rounds
    from bench.training.train import build_trainable
    from benchmarks.process_state import _independent

    torch.set_num_threads(2)
    mnist = resolve_mnist(None, fill_cache=False)
    test = make_split(mnist.test_images, mnist.test_labels, "standard", "cpu", 2000)
    options, prepared = BackendOptions(), {}
    for name in ("cpu-fp32", "cpu-bf16", "onnxruntime-cpu"):
        b = get_backend(name)
        b.configure(options)
        prepared[name] = b.engine.prepare(build_trainable("mlp", b, options, 0), b, options, test.x[:256])
    cfg = InferConfig(rounds=8, budget_s=0.8, resolution_pct=0.0)

    def harness(names: list[str], bs: int) -> tuple[dict, dict]:
        inputs = {n: prepared[n].to_input(input_batch(test.x, bs)) for n in names}
        contenders = [Contender(n, lambda p=prepared[n], x=inputs[n]: p.predict(x), "cpu") for n in names]
        measure_rounds(contenders, bs, cfg)
        out = {}
        for c in contenders:
            t = pd.DataFrame(c.rows)
            out[c.name] = 1e3 / headline_rate(t.seconds.groupby(t["round"]).median().to_numpy())
        return out, inputs

    rows = []
    for bs in (1, 32):
        together, inputs = harness(list(prepared), bs)
        for n in ("cpu-bf16", "onnxruntime-cpu"):
            alone, _ = harness([n], bs)
            independent, _ = _independent(prepared[n], inputs[n], tb)
            rows.append({"env": os.environ.get("OMP_WAIT_POLICY", "default"), "batch_size": bs, "backend": n,
                         "interleaved_ms": together[n], "alone_ms": alone[n], "independent_ms": independent})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
