"""ONNX Runtime int8: the fp32 export quantized with ONNX Runtime's own tooling, then run like any
ONNX Runtime backend. The backend row's ``quantization`` option picks the method:

- ``dynamic`` (``quantize_dynamic``): int8 weights (per tensor), activations quantized at run time
  batch by batch; no calibration. Convolutions become ConvInteger, which ONNX Runtime's CPU
  provider runs far slower than its fp32 convolution, so the CNN is slower with it, not faster.
- ``static`` (``quantize_static``, QDQ format): int8 weights per output channel, int8 activations with
  scales calibrated ahead of time (MinMax) on a fixed subset of the training images: the first
  ``bench.scheduling.cells.CALIBRATION_IMAGES`` (512), normalized as in training, fed in batches of 64.

Both start from ``quant_pre_process`` (shape inference and graph optimization) of the fp32 export.
The quantization time is reported as ``quantize_s``, apart from the export time."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from bench.engines.base import missing_module
from bench.engines.onnxruntime import OnnxRuntimeEngine
from bench.measure.clocks import Stopwatch
from bench.plumbing.lazy import torch

MODES = ("dynamic", "static")
INTEGER_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear",
               "DynamicQuantizeLinear")
CALIBRATION_BATCH = 64


class OnnxRuntimeInt8Engine(OnnxRuntimeEngine):
    name = "onnxruntime-int8"
    fact_columns = ("quantization", "quantize_s", "quantized_ops", "calibration_images", "fp32_onnx_bytes",
                    *OnnxRuntimeEngine.fact_columns)

    def probe(self, backend) -> str | None:
        reason = super().probe(backend) or missing_module("onnxruntime.quantization")
        if reason is None and backend.options.get("quantization") not in MODES:
            reason = f"quantization must be one of {', '.join(MODES)}; got {backend.options.get('quantization')!r}"
        return reason

    def model_file(self, fp32_path: Path, backend, calibration: torch.Tensor) -> tuple[Path, dict]:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Batches(CalibrationDataReader):
            def __init__(self) -> None:
                x = calibration.cpu().numpy().astype(np.float32)
                self._it = iter([{"input": x[i : i + CALIBRATION_BATCH]} for i in range(0, len(x), CALIBRATION_BATCH)])

            def get_next(self):
                return next(self._it, None)

        mode = backend.options["quantization"]
        pre, out = fp32_path.with_name("model.pre.onnx"), fp32_path.with_name(f"model.int8-{mode}.onnx")
        # The quantization tools log advice through the root logger and print progress; keep both
        # off the harness's output.
        with Stopwatch("cpu") as sw, _quiet():
            quant_pre_process(str(fp32_path), str(pre))
            if mode == "dynamic":
                quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=False)
            else:
                quantize_static(str(pre), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
        facts = {"quantization": mode, "quantize_s": sw.seconds, "fp32_onnx_bytes": fp32_path.stat().st_size,
                 "onnx_bytes": out.stat().st_size, "calibration_images": len(calibration) if mode == "static" else 0,
                 **_integer_ops(out)}
        return out, facts


def _integer_ops(path: Path) -> dict:
    """Which integer operators the quantized graph holds, and a note where one of them is known to
    be slower than the fp32 operator it replaced."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    counts = {op: ops.count(op) for op in sorted(set(ops)) if op in INTEGER_OPS}
    facts = {"quantized_ops": ", ".join(f"{op}×{n}" for op, n in counts.items())}
    if "ConvInteger" in counts:
        facts["engine_note"] = ("dynamic quantization turned the convolutions into ConvInteger, which ONNX Runtime's "
                                "CPU provider runs several times slower than its fp32 convolution: compare this "
                                "row's latency with onnxruntime-cpu")
    return facts


@contextlib.contextmanager
def _quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
