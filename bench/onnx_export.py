"""ONNX export of a trained model and ONNX Runtime sessions (CPU, or CUDA with IO binding).

onnx and onnxruntime are imported lazily: without them the backend is a skipped row."""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.config import BackendOptions
from bench.memory import current_rss_bytes

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


def export_onnx(model: torch.nn.Module, path: Path) -> dict:
    """Export with a dynamic batch dimension, validate with onnx.checker; returns export facts."""
    import onnx

    model = model.eval().cpu()
    start = time.perf_counter()
    # The exporter reports its progress on stdout; keep the harness's own output readable. Some
    # torch releases raise deprecation warnings from inside their own exporter (not our calls).
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*|copyreg")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*|onnxscript\..*")
        torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                          dynamo=True, verbose=False)
    export_s = time.perf_counter() - start
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"export_s": export_s, "onnx_bytes": path.stat().st_size, "opset": opset}


class OrtRunner:
    """An ONNX Runtime session plus a ``run(x: np.ndarray) -> np.ndarray`` for one provider."""

    def __init__(self, path: Path, device: str, options: BackendOptions) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[options.ort_opt_level])
        so.intra_op_num_threads = options.ort_intra_threads
        so.inter_op_num_threads = options.ort_inter_threads
        so.log_severity_level = 3
        providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        rss0 = current_rss_bytes()
        start = time.perf_counter()
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.session_create_s = time.perf_counter() - start
        self.device = device
        self._ort = ort
        start = time.perf_counter()
        self.run(np.zeros((1, 1, 28, 28), np.float32))
        self.first_inference_s = time.perf_counter() - start
        self.session_rss_bytes = current_rss_bytes() - rss0

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.device != "cuda":
            return self.session.run(["logits"], {"input": x})[0]
        # IO binding: input copied to the GPU once per call, output left on the device.
        binding = self.session.io_binding()
        binding.bind_ortvalue_input("input", self._ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output("logits", "cuda")
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def logits(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        outs = []
        for i in range(0, len(images), batch_size):
            out = self.run(images[i : i + batch_size].cpu().numpy())
            outs.append(torch.from_numpy(out if isinstance(out, np.ndarray) else out.numpy()))
        return torch.cat(outs)


def parity(reference_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """How far a backend's logits are from the fp32 eager model's, on the same weights and data."""
    ref, out, labels = reference_logits.float().cpu(), logits.float().cpu(), labels.cpu()
    ref_acc = (ref.argmax(1) == labels).float().mean().item()
    acc = (out.argmax(1) == labels).float().mean().item()
    delta_pts = (acc - ref_acc) * 100
    return {
        "parity_max_abs_logit_diff": (ref - out).abs().max().item(),
        "parity_argmax_agreement": (ref.argmax(1) == out.argmax(1)).float().mean().item(),
        "parity_accuracy_delta_pts": delta_pts,
        "parity_flag": bool(delta_pts < -0.2),
    }
