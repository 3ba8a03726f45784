"""Backends on the CPU: compile, memory semantics, error and oom rows."""

import pytest
import torch

from bench.config.build import TrainConfig, build_config
from bench.data.mnist import make_split, resolve_mnist
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.measure.accuracy import parity
from bench.measure.memory import CellMemory
from bench.scheduling.runner import Runner
from bench.storage.results import read_run
from bench.training.train import TrainJob, train_model

from .conftest import TINY


@pytest.fixture(scope="module")
def small(mnist_path):
    m = resolve_mnist(mnist_path)
    return (make_split(m.train_images, m.train_labels, "minmax", "cpu", 1024),
            make_split(m.test_images, m.test_labels, "minmax", "cpu", 500))


@pytest.mark.slow
def test_compile_on_cpu_cold_start_apart(small):
    b = get_backend("cpu-fp32-compile")
    if b.unavailable_reason():
        pytest.skip(b.unavailable_reason())
    train, test = small
    cfg = TrainConfig(epochs=1, batch_size=64, evals_per_epoch=1, warmup_steps=2)
    compiled = train_model(TrainJob("mlp", b, train, test, cfg, 0, BackendOptions())).summary
    eager = train_model(TrainJob("mlp", get_backend("cpu-fp32"), train, test, cfg, 0, BackendOptions())).summary
    # the first compiled step (compilation) is reported apart: the steady rate leaves the warm-up out
    # (a structural check; how much slower the cold step is depends on the machine's load)
    steady = (compiled["steps"] - compiled["warmup_steps"]) * 64
    assert compiled["cold_step_s"] > 0 and compiled["warmup_s"] >= compiled["cold_step_s"]
    assert steady / (compiled["train_s"] - compiled["warmup_s"]) == pytest.approx(compiled["train_mean_samples_per_s"])
    assert abs(compiled["test_accuracy"] - eager["test_accuracy"]) < 0.02


def test_memory_peak_is_per_cell():
    with CellMemory("cpu") as big:
        x = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB touched
        x += 1
        del x
    with CellMemory("cpu") as small:
        torch.ones(1000).sum()
    assert big.values["rss_scope"] == small.values["rss_scope"]
    if big.values["rss_scope"] != "cell":
        pytest.skip("this OS cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    assert big.values["peak_rss_bytes"] - small.values["peak_rss_bytes"] > 128 * 2**20


def test_parity_metrics():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = torch.tensor([[0.9, 0.0], [1.0, 0.0], [1.0, 0.0]])
    p = parity(ref, out, torch.tensor([0, 1, 0]))
    assert p["parity_max_abs_logit_diff"] == pytest.approx(1.0)
    assert p["parity_argmax_agreement"] == pytest.approx(2 / 3)
    assert p["parity_accuracy_delta_pts"] == pytest.approx(-100 / 3) and p["parity_flag"]


def _tiny_cfg(mnist_path, out, backends):
    args = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY[::2]], TINY[1::2]))
    return build_config({**args, "models": "mlp", "backends": backends, "data_dir": str(mnist_path),
                         "out": str(out)})


@pytest.mark.slow
def test_export_failure_is_an_error_row_and_run_goes_on(mnist_path, tmp_path, monkeypatch):
    import bench.engines.onnxruntime as ort_engine

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(ort_engine, "export_onnx", broken)
    monkeypatch.setattr(ort_engine, "_EXPORTS", {})  # an earlier test's export of the same weights is not reused
    run_dir = Runner(_tiny_cfg(mnist_path, tmp_path, "cpu-fp32,onnxruntime-cpu"), progress=False).run()
    s = read_run(run_dir)["summary"].set_index(["backend", "phase", "batch_size"], drop=False)
    export = s[(s.backend == "onnxruntime-cpu") & (s.phase == "export")].iloc[0]
    assert export.status == "error" and "exporter exploded" in export.reason
    ort_infer = s[(s.backend == "onnxruntime-cpu") & (s.phase == "infer")]
    assert (ort_infer.status == "skipped").all() and (ort_infer.reason == "preparing the model failed").all()
    assert (s[s.backend == "cpu-fp32"].status == "ok").all()


@pytest.mark.slow
def test_out_of_memory_during_the_rounds_is_an_oom_row(mnist_path, tmp_path, monkeypatch):
    """A predict that runs out of memory once the timed rounds begin (after the memory pass)."""
    from bench.engines import ENGINES, Prepared

    eager = ENGINES["eager"]
    real_prepare = eager.prepare

    def prepare(model, backend, options, calibration):
        real = real_prepare(model, backend, options, calibration)
        calls = []

        def predict(x):
            calls.append(1)
            if len(calls) > 3:  # the memory pass and the cold first call succeed
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 PiB")
            return real.predict(x)

        return Prepared(predict, real.clock_device, real.to_input)

    monkeypatch.setattr(eager, "prepare", prepare)
    run_dir = Runner(_tiny_cfg(mnist_path, tmp_path, "cpu-fp32,onnxruntime-cpu"), progress=False).run()
    s = read_run(run_dir)["summary"]
    infer = s[s.phase == "infer"]
    mine, other = infer[infer.backend == "cpu-fp32"], infer[infer.backend == "onnxruntime-cpu"]
    assert (mine.status == "oom").all() and mine.reason.str.contains("out of memory").all()
    assert (other.status == "ok").all() and (other.rounds >= 12).all()  # the other backend's rounds went on
    assert (s[s.phase == "train"].status == "ok").all()
