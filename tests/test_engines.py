"""The plug-in points: an engine, a backend and a model defined inside a test run through the
whole harness (probe, prepare, time, write, render) without any other file knowing them; and the
packages import without cycles."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import models
from bench.config.build import build_config
from bench.engines import ENGINES, BackendOptions, Prepared
from bench.engines.backends import BACKENDS, Backend, get_backend
from bench.scheduling.runner import Runner
from bench.storage.results import read_run
from reports.html import render_report

from .conftest import ROOT, TINY


class Float64Engine:
    """A test engine: runs the trained model in float64 on the CPU (a model trained by PyTorch)."""

    name = "test-float64"
    trains = False
    reference = False
    test_marks = ()

    def __init__(self) -> None:
        self.calls = {"probe": 0, "prepare": 0, "predict": 0}

    def probe(self, backend):
        self.calls["probe"] += 1
        return backend.options.get("missing")  # a reason when the row says something is missing

    def settings(self, options: BackendOptions) -> dict:
        return {"float64_note": "test engine"}

    def training_forward(self, model, backend):
        raise TypeError("does not train")

    def prepare(self, model, backend, options, calibration) -> Prepared:
        self.calls["prepare"] += 1
        model = model.double().eval()

        def predict(x):
            self.calls["predict"] += 1
            with torch.no_grad():
                return model(x)

        return Prepared(predict, "cpu", to_input=lambda x: x.double().cpu(), facts={"conversion": "float64"})

    def memory_device(self, backend) -> str:
        return "cpu"


def _tiny_values(tmp_path, mnist_path, models_, backends):
    args = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY[::2]], TINY[1::2]))
    return {**args, "models": models_, "backends": backends, "data_dir": str(mnist_path), "out": str(tmp_path)}


@pytest.mark.slow
def test_an_engine_defined_in_a_test_is_probed_prepared_timed_written_and_rendered(mnist_path, tmp_path, monkeypatch):
    engine = Float64Engine()
    monkeypatch.setitem(ENGINES, engine.name, engine)
    monkeypatch.setitem(BACKENDS, "cpu-float64", Backend("cpu-float64", engine, "cpu", "fp64"))
    monkeypatch.setitem(BACKENDS, "gpu-float64", Backend("gpu-float64", engine, "cuda", "fp64",
                                                         {"missing": "float64 GPU not here"}))
    cfg = build_config(_tiny_values(tmp_path, mnist_path, "mlp", "cpu-fp32,cpu-float64,gpu-float64"))
    run_dir = Runner(cfg, progress=False).run()
    s = read_run(run_dir)["summary"]
    mine = s[s.backend == "cpu-float64"].set_index(["phase", "batch_size"], drop=False)
    assert set(mine.status) == {"ok"} and set(mine.engine) == {"test-float64"}
    export = mine[mine.phase == "export"].iloc[0]
    assert export.conversion == "float64" and export.float64_note == "test engine"
    # float64 of the same weights: the same predictions as the fp32 reference
    assert export.parity_argmax_agreement == 1.0 and export.parity_max_abs_logit_diff < 1e-4
    infer = mine[mine.phase == "infer"]
    assert sorted(infer.batch_size) == [1, 32] and (infer.samples_per_s > 0).all() and (infer.n_samples >= 1).all()
    assert engine.calls["prepare"] == 1 and engine.calls["predict"] > infer.n_samples.sum()
    skipped = s[s.backend == "gpu-float64"]
    assert set(skipped.status) == {"skipped"} and set(skipped.reason) == {"float64 GPU not here"}
    assert set(skipped.phase) == {"export", "infer"}  # a non-training engine's cells, each with the reason
    html = render_report([run_dir], tmp_path / "report.html").read_text()
    assert "cpu-float64" in html and "float64 GPU not here" in html


class Logistic(nn.Sequential):
    """Multinomial logistic regression: the smallest model that learns MNIST."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(784, 10))


@pytest.fixture
def logistic_model(monkeypatch):
    spec = models.ModelSpec("logistic", Logistic, target_accuracy=0.85, recipes={"quick": {"lr": 5e-3}})
    monkeypatch.setitem(models._REGISTRY, "logistic", spec)
    return spec


@pytest.mark.slow
def test_a_model_registered_in_a_test_runs_through_train_and_inference_cells(mnist_path, tmp_path, logistic_model):
    from models import model_names

    assert model_names()[-1] == "logistic"
    cfg = build_config(_tiny_values(tmp_path, mnist_path, "logistic", "cpu-fp32,onnxruntime-cpu"))
    assert cfg.train_for("logistic").target_accuracy == 0.85 and cfg.train_for("logistic").lr == 5e-3
    run_dir = Runner(cfg, progress=False).run()
    s = read_run(run_dir)["summary"]
    assert set(s.status) == {"ok"}, s[s.status != "ok"][["backend", "phase", "reason"]]
    train = s[s.phase == "train"].iloc[0]
    assert train.params == 7850 and train.test_accuracy > 0.6
    assert set(s[s.phase == "infer"].backend) == {"cpu-fp32", "onnxruntime-cpu"}
    assert "logistic" in render_report([run_dir], tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_int8_rows_have_parity_and_quantization_figures(mnist_path, tmp_path):
    for name in ("onnxruntime-int8-dynamic", "onnxruntime-int8-static"):
        if get_backend(name).unavailable_reason():
            pytest.skip(get_backend(name).unavailable_reason())
    values = _tiny_values(tmp_path, mnist_path, "mlp,cnn", "cpu-fp32,onnxruntime-cpu,onnxruntime-int8-dynamic,"
                                                           "onnxruntime-int8-static")
    run_dir = Runner(build_config(values), progress=False).run()
    s = read_run(run_dir)["summary"]
    assert set(s.status) == {"ok"}, s[s.status != "ok"][["backend", "phase", "reason"]]
    cnn = s[(s.phase == "export") & (s.model == "cnn")].set_index("backend")
    assert "ConvInteger" in cnn.loc["onnxruntime-int8-dynamic", "quantized_ops"]
    assert "slower" in cnn.loc["onnxruntime-int8-dynamic", "engine_note"]  # said in the report, not hidden
    assert "several times slower" in render_report([run_dir], tmp_path / "int8.html").read_text()
    export = s[(s.phase == "export") & (s.model == "mlp")].set_index("backend")
    assert export.engine_note.isna().all()
    assert "MatMulInteger" in export.loc["onnxruntime-int8-dynamic", "quantized_ops"]
    fp32 = export.loc["onnxruntime-cpu"]
    for name, mode in (("onnxruntime-int8-dynamic", "dynamic"), ("onnxruntime-int8-static", "static")):
        row = export.loc[name]
        assert row.quantization == mode and row.precision == "int8" and row.quantize_s > 0
        assert row.onnx_bytes < 0.5 * fp32.onnx_bytes and row.fp32_onnx_bytes == pytest.approx(fp32.onnx_bytes, 0.01)
        # 500 test images: one image is 0.2 points; int8 of this MLP stays within a few images of fp32
        assert abs(row.parity_accuracy_delta_pts) <= 1.0 and row.parity_argmax_agreement >= 0.98
    assert export.loc["onnxruntime-int8-static", "calibration_images"] == 512


# -- import contracts ----------------------------------------------------------------------------


def test_import_contracts_hold():
    """The layers, no circles and plugin-free reports, as declared in .importlinter (also run by CI's
    lint step as ``lint-imports``)."""
    pytest.importorskip("importlinter")
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.onnx
def test_a_fresh_process_reads_the_export_handed_over_instead_of_exporting_again(monkeypatch):
    """A timing worker or a serving process prepares the ONNX backends from the fp32 export the
    run's process made (``fresh.handed_over``): no second export, the same outputs, and the one
    export's facts."""
    pytest.importorskip("onnxruntime")
    import bench.engines.onnxruntime as ort_engine
    from bench.scheduling.fresh import handed_over, prepare_again

    cfg = build_config({"models": "mlp", "backends": "onnxruntime-cpu,onnxruntime-int8-static"})
    torch.manual_seed(0)
    net = models.build_model("mlp").eval()
    calibration, x = torch.randn(64, 1, 28, 28), torch.randn(4, 1, 28, 28)
    here = {name: get_backend(name) for name in ("onnxruntime-cpu", "onnxruntime-int8-static")}
    made = {name: b.engine.prepare(net, b, cfg.backend_options, calibration) for name, b in here.items()}
    spec = handed_over("mlp", {name: net for name in here}, cfg, calibration)
    monkeypatch.setattr(ort_engine, "_EXPORTS", {})  # a fresh process holds no export of its own
    monkeypatch.setattr(ort_engine, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    again = prepare_again(spec)
    for name, prepared in again.items():
        assert prepared.facts["export_s"] == made[name].facts["export_s"]
        assert torch.equal(prepared.to_logits(prepared.predict(prepared.to_input(x))),
                           made[name].to_logits(made[name].predict(made[name].to_input(x))))
