"""Each benchmark body synchronizes the device through the harness's clock before returning,
so pytest-benchmark's timer sees complete CUDA work, not kernel launches. Every backend is
prepared by its own engine, exactly as in ``mnist-bench run``."""

from __future__ import annotations

import pytest
import torch

from bench.config.build import TrainConfig
from bench.data.mnist import make_split
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.measure.clocks import clock_for, time_calls
from bench.measure.cost import model_cost
from bench.measure.latency import input_batch
from bench.measure.memory import CellMemory
from bench.scheduling.cells import calibration_images
from bench.training.train import build_optimizer, build_trainable, make_train_step


def _available(backend_name: str):
    b = get_backend(backend_name)
    reason = b.unavailable_reason()
    if reason:
        pytest.skip(reason)
    b.configure(BackendOptions())
    return b


def _run(benchmark, body, clock, opts, info: dict, batch_size: int) -> None:
    """Cold call apart, then pytest-benchmark's rounds (its own calibration, or fixed rounds when
    --suite-rounds is given); grouped per model, phase and batch size; results into extra_info."""
    synced = lambda: (body(), clock.sync())
    cold, _ = time_calls(body, clock, 1)
    benchmark.group = f"{info['model']} {info['phase']}" + (f" bs{batch_size}" if info["phase"] == "infer" else "")
    with CellMemory(clock.device) as mem:
        if opts["rounds"] is None:
            for _ in range(opts["warmup"]):
                synced()
            benchmark(synced)
        else:
            benchmark.pedantic(synced, rounds=opts["rounds"], warmup_rounds=opts["warmup"], iterations=1)
    info.update(cold_first_call_ms=cold[0] * 1e3, batch_size=batch_size, **mem.values)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not getattr(benchmark, "disabled", False):
        info["samples_per_s"] = batch_size / stats.stats.median
    benchmark.extra_info.update(info)


def _info(model_name, b, phase) -> dict:
    return {"model": model_name, "backend": b.name, "device": b.device, "precision": b.precision,
            "engine": b.engine.name, "phase": phase, "torch": torch.__version__, "threads": torch.get_num_threads(),
            **model_cost(model_name)}


def test_train_step(benchmark, mnist, suite_options, model_name, backend_name):
    b = _available(backend_name)
    if not b.trains:
        pytest.skip(f"{b.engine.name} runs models trained by a PyTorch backend; it does not train")
    bs = suite_options["train_batch"]
    split = make_split(mnist.train_images, mnist.train_labels, "minmax", b.device, limit=bs * 8)
    model = build_trainable(model_name, b, BackendOptions(), seed=0)
    opt, _ = build_optimizer(model, TrainConfig(batch_size=bs), 1)
    step = make_train_step(b.engine.training_forward(model, b), b, opt, scaler=b.grad_scaler())
    x, y = split.x[:bs], split.y[:bs]
    _run(benchmark, lambda: step(x, y), clock_for(b.device), suite_options, _info(model_name, b, "train"), bs)


@pytest.fixture(scope="module")
def prepared_models(mnist):
    """Each (model, backend) prepared once by its engine (untrained weights: latency does not depend
    on their values; static int8 calibrates on the same fixed training images as a run)."""
    cache = {}

    def get(model_name: str, b):
        if (model_name, b.name) not in cache:
            torch.manual_seed(0)
            model = build_trainable(model_name, b, BackendOptions(), seed=0)
            train = make_split(mnist.train_images, mnist.train_labels, "minmax", "cpu", limit=1024)
            cache[model_name, b.name] = b.engine.prepare(model, b, BackendOptions(), calibration_images(train))
        return cache[model_name, b.name]

    return get


def test_inference(benchmark, mnist, suite_options, prepared_models, model_name, backend_name, batch_size):
    b = _available(backend_name)
    prepared = prepared_models(model_name, b)
    images = make_split(mnist.test_images, mnist.test_labels, "minmax", b.device).x
    x = prepared.to_input(input_batch(images, batch_size))
    _run(benchmark, lambda: prepared.predict(x), clock_for(prepared.clock_device), suite_options,
         _info(model_name, b, "infer"), batch_size)
