"""Each benchmark body synchronizes the device through the harness's clock before returning,
so pytest-benchmark's timer sees complete CUDA work, not kernel launches."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from bench.backends import get_backend
from bench.config import BackendOptions, TrainConfig
from bench.data import make_split
from bench.flops import model_cost
from bench.infer import input_batch, torch_predictor
from bench.memory import CellMemory
from bench.timing import clock_for, time_calls
from bench.train import build_optimizer, build_trainable, make_train_step


def _available(backend_name: str):
    b = get_backend(backend_name)
    reason = b.unavailable_reason()
    if reason:
        pytest.skip(reason)
    b.configure(BackendOptions())
    return b


def _run(benchmark, body, clock, opts, info: dict, batch_size: int) -> None:
    """Cold call apart, then pytest-benchmark's pedantic rounds; results into extra_info."""
    synced = lambda: (body(), clock.sync())
    cold, _ = time_calls(body, clock, 1)
    with CellMemory(clock.device) as mem:
        benchmark.pedantic(synced, rounds=opts["rounds"], warmup_rounds=opts["warmup"], iterations=1)
    info.update(cold_first_call_ms=cold[0] * 1e3, batch_size=batch_size, **mem.values)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not getattr(benchmark, "disabled", False):
        info["samples_per_s"] = batch_size / stats.stats.median
    benchmark.extra_info.update(info)


def _info(model_name, b, phase) -> dict:
    return {"model": model_name, "backend": b.name, "device": b.device, "precision": b.precision,
            "engine": b.engine, "phase": phase, "torch": torch.__version__, "threads": torch.get_num_threads(),
            **model_cost(model_name)}


def test_train_step(benchmark, mnist, suite_options, model_name, backend_name):
    b = _available(backend_name)
    if not b.trains:
        pytest.skip("ONNX Runtime backends run inference only")
    bs = suite_options["train_batch"]
    split = make_split(mnist.train_images, mnist.train_labels, "minmax", b.device, limit=bs * 8)
    model = build_trainable(model_name, b, BackendOptions(), seed=0)
    opt, _ = build_optimizer(model, TrainConfig(batch_size=bs), 1)
    forward = torch.compile(model) if b.engine == "compile" else model
    step = make_train_step(forward, b, opt, scaler=b.grad_scaler())
    x, y = split.x[:bs], split.y[:bs]
    _run(benchmark, lambda: step(x, y), clock_for(b.device), suite_options, _info(model_name, b, "train"), bs)


@pytest.fixture(scope="module")
def onnx_files():
    """Exported once per model (untrained weights: latency does not depend on their values)."""
    from bench.onnx_export import export_onnx
    from models import build_model

    cache: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def get(model_name: str) -> Path:
            if model_name not in cache:
                cache[model_name] = Path(tmp) / f"{model_name}.onnx"
                export_onnx(build_model(model_name), cache[model_name])
            return cache[model_name]

        yield get


def test_inference(benchmark, mnist, suite_options, onnx_files, model_name, backend_name, batch_size):
    b = _available(backend_name)
    info = _info(model_name, b, "infer")
    if b.engine == "onnxruntime":
        from bench.onnx_export import OrtRunner

        runner = OrtRunner(onnx_files(model_name), b.device, BackendOptions())
        x = input_batch(make_split(mnist.test_images, mnist.test_labels, "minmax", "cpu").x, batch_size).numpy()
        _run(benchmark, lambda: runner.run(x), clock_for("cpu"), suite_options, info, batch_size)
        return
    model = build_trainable(model_name, b, BackendOptions(), seed=0)
    predict = torch_predictor(model, b)
    x = input_batch(make_split(mnist.test_images, mnist.test_labels, "minmax", b.device).x, batch_size)
    _run(benchmark, lambda: predict(x), clock_for(b.device), suite_options, info, batch_size)
