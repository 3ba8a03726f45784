"""Runs the (model x backend) matrix: config -> data -> cells -> result files -> report.

Each cell is written to disk as soon as it completes. A backend that cannot run here becomes
skipped rows with the reason; a cell that fails becomes an ``error`` (or ``oom``) row and the
run goes on."""

from __future__ import annotations

import copy
import sys
import tempfile
import traceback
from pathlib import Path

import pandas as pd
import torch

from bench import BenchError
from bench.backends import Backend, get_backend
from bench.config import RunConfig
from bench.data import Mnist, Split, make_split, resolve_mnist
from bench.dynamics import DynamicsRecorder, load_checkpoints
from bench.dynamics_analysis import DynamicsConfig, analyse
from bench.flops import model_cost, peak_matmul_flops
from bench.infer import benchmark_ort, benchmark_torch, torch_predictor
from bench.memory import CellMemory
from bench.meta import collect_metadata, now_iso
from bench.onnx_export import OrtRunner, export_onnx, parity
from bench.profiler import ProfileConfig, profile_training
from bench.results import check_writable, new_run_id, write_cell, write_json
from bench.stats import classification_metrics
from bench.train import misclassified, predict_logits, train_model


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class Runner:
    def __init__(self, cfg: RunConfig, argv: list[str] | None = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.argv = argv
        self.progress = progress
        self._splits: dict[tuple, tuple[Split, Split]] = {}
        self._dynamics_done: set[str] = set()

    # -- setup -------------------------------------------------------------------------------
    def _probe(self) -> list[tuple[Backend, str | None]]:
        probed = [(get_backend(n), get_backend(n).unavailable_reason()) for n in self.cfg.backends]
        if all(reason for _, reason in probed):
            raise BenchError("every requested backend is unavailable: "
                             + "; ".join(f"{b.name}: {r}" for b, r in probed))
        for b, reason in probed:
            if reason:
                warn(f"backend {b.name} skipped: {reason}")
        return probed

    def splits(self, model: str, device: str) -> tuple[Split, Split]:
        t = self.cfg.train_for(model)
        key = (device, t.normalization, t.limit_train, t.limit_test)
        if key not in self._splits:
            m = self.mnist
            self._splits[key] = (
                make_split(m.train_images, m.train_labels, t.normalization, device, t.limit_train),
                make_split(m.test_images, m.test_labels, t.normalization, device, t.limit_test),
            )
        return self._splits[key]

    def run(self) -> Path:
        """The whole matrix; returns the run folder."""
        probed = self._start()
        return self._finish(lambda: [self._run_model(model, probed) for model in self.cfg.models])

    def profile(self, model: str, pcfg: ProfileConfig) -> Path:
        """Profile training steps of ``model`` on each available backend (never timed)."""
        probed = self._start()

        def body() -> None:
            for b, reason in probed:
                if reason or not b.trains:
                    why = reason or "profiling covers training steps of PyTorch backends"
                    self._write(model, b, "profile", {"summary": pd.DataFrame([self._row(
                        model, b, "profile", status="skipped", reason=why)])})
                    continue
                self._guarded(model, b, "profile", lambda: self._profile_cell(model, b, pcfg))

        return self._finish(body)

    def _start(self):
        cfg = self.cfg
        check_writable(cfg.out)
        probed = self._probe()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.mnist: Mnist = resolve_mnist(cfg.data_dir)
        self.run_id = new_run_id()
        self.run_dir = cfg.out / self.run_id
        self.run_dir.mkdir(parents=True)
        self.meta = collect_metadata(cfg, self.argv)
        self.meta.update(run_id=self.run_id, data_source=self.mnist.source, start_time=now_iso(), status="running")
        write_json(self.run_dir / "meta.json", self.meta)
        self._write_samples()
        return probed

    def _finish(self, body) -> Path:
        try:
            body()
            self.meta["status"] = "complete"
        except KeyboardInterrupt:
            self.meta["status"] = "interrupted"
            raise
        finally:
            self.meta["end_time"] = now_iso()
            write_json(self.run_dir / "meta.json", self.meta)
        return self.run_dir

    def _profile_cell(self, model: str, b: Backend, pcfg: ProfileConfig) -> None:
        train, _ = self.splits(model, b.device)
        cfg = self.cfg.train_for(model)
        b.configure(self.cfg.backend_options)
        tables = profile_training(model, b, train, cfg.batch_size, self.cfg.seed, self.cfg.backend_options, pcfg,
                                  self.run_dir / "profile")
        row = {**self._row(model, b, "profile", cfg.batch_size), "profile_steps_active": pcfg.active,
               "profile_steps_wait": pcfg.wait, "profile_steps_warmup": pcfg.warmup,
               "record_shapes": pcfg.record_shapes, "profile_memory": pcfg.profile_memory,
               "with_stack": pcfg.with_stack}
        self._write(model, b, "profile", {"summary": pd.DataFrame([row]), **tables})

    def _write_samples(self) -> None:
        m = self.mnist
        pd.DataFrame({
            "index": range(16), "label": m.train_labels[:16].numpy(),
            "pixels": [m.train_images[i].numpy().tobytes() for i in range(16)],
        }).to_parquet(self.run_dir / "samples.parquet", index=False)

    # -- cells -------------------------------------------------------------------------------
    def _row(self, model: str, b: Backend, phase: str, batch_size=None, status="ok", reason="") -> dict:
        return {"model": model, "backend": b.name, "device": b.device, "precision": b.precision,
                "engine": b.engine, "phase": phase, "batch_size": batch_size, "status": status, "reason": reason}

    def _write(self, model: str, b: Backend, phase: str, tables: dict, batch_size=None, files=None) -> None:
        cell_id = f"{model}__{b.name}__{phase}" + (f"_bs{batch_size}" if batch_size else "")
        write_cell(self.run_dir, cell_id, tables, files)

    def _guarded(self, model: str, b: Backend, phase: str, body, batch_size=None):
        """Run one cell; a failure becomes an error/oom row and the run goes on."""
        try:
            return body()
        except torch.cuda.OutOfMemoryError as e:
            status, reason = "oom", str(e).splitlines()[0]
        except (KeyboardInterrupt, BenchError):
            raise
        except Exception as e:  # the cell failed; record it, keep the run going
            status, reason = "error", f"{type(e).__name__}: {e}".splitlines()[0][:500]
            if self.progress:
                traceback.print_exc(file=sys.stderr)
        warn(f"{model} {b.name} {phase}{'' if batch_size is None else f' bs={batch_size}'}: {status}: {reason}")
        self._write(model, b, phase, {"summary": pd.DataFrame([self._row(model, b, phase, batch_size, status,
                                                                             reason)])}, batch_size)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None

    def _skip(self, model: str, b: Backend, reason: str) -> None:
        phases = [("train", None)] if b.trains else [("export", None)]
        phases += [("infer", bs) for bs in self.cfg.infer.batch_sizes]
        for phase, bs in phases:
            self._write(model, b, phase, {"summary": pd.DataFrame([self._row(model, b, phase, bs, "skipped",
                                                                                 reason)])}, bs)

    def _run_model(self, model: str, probed) -> None:
        reference: torch.nn.Module | None = None  # trained weights for the ONNX rows (CPU copy)
        reference_is_fp32 = False
        ordered = [p for p in probed if p[0].trains] + [p for p in probed if not p[0].trains]
        for b, reason in ordered:
            if reason:
                self._skip(model, b, reason)
                continue
            settings = b.configure(self.cfg.backend_options)
            if b.trains:
                trained = self._guarded(model, b, "train", lambda: self._train_cell(model, b, settings))
                if trained is None:
                    continue
                fp32_eager = b.precision == "fp32" and b.engine == "eager"
                if reference is None or (fp32_eager and not reference_is_fp32):
                    reference, reference_is_fp32 = copy.deepcopy(trained).cpu(), fp32_eager
                _, test = self.splits(model, b.device)
                for bs in self.cfg.infer.batch_sizes:
                    self._guarded(model, b, "infer", lambda: self._infer_cell(
                        model, b, bs, settings, lambda: benchmark_torch(trained, b, test.x, bs, self.cfg.infer)), bs)
            else:
                if reference is None:
                    cpu = get_backend("cpu-fp32")
                    reference = self._guarded(model, cpu, "train", lambda: self._train_cell(
                        model, cpu, cpu.configure(self.cfg.backend_options), note="reference for onnxruntime"))
                    if reference is None:
                        self._skip(model, b, "no trained model to export (reference training failed)")
                        continue
                self._ort_cells(model, b, reference, settings)

    def _train_cell(self, model: str, b: Backend, settings: dict, note: str = "") -> torch.nn.Module:
        cfg = self.cfg.train_for(model)
        train, test = self.splits(model, b.device)
        cost = model_cost(model)
        # dynamics are recorded for the first backend that trains each model
        recorder = None
        if self.cfg.dynamics and model not in self._dynamics_done:
            recorder = DynamicsRecorder(cfg.epochs * train.train_steps(cfg.batch_size), self.cfg.dynamics_every)
            self._dynamics_done.add(model)
        with CellMemory(b.device) as mem:
            result = train_model(model, b, train, test, cfg, self.cfg.seed, self.cfg.backend_options,
                                 progress=self.progress, recorder=recorder)
        row = {**self._row(model, b, "train", cfg.batch_size, reason=note), **settings, **cost,
               **result.summary, **mem.values}
        row["achieved_flops_per_s"] = cost["train_flops_per_sample"] * row["train_samples_per_s"]
        # Autocast runs some ops in fp32: the denominator is the best peak among the dtypes in play
        # (on CPUs without native bf16 the bf16 matmul is slower than fp32).
        row["peak_matmul_flops_per_s"] = max(peak_matmul_flops(b.device, "fp32"),
                                             peak_matmul_flops(b.device, b.precision))
        row["mfu"] = row["achieved_flops_per_s"] / row["peak_matmul_flops_per_s"]
        row.update(epochs=cfg.epochs, optimizer=cfg.optimizer, schedule=cfg.schedule, lr=cfg.lr,
                   seed=self.cfg.seed, normalization=cfg.normalization)
        if not (b.precision == "fp32" and b.engine == "eager"):
            ref_logits = predict_logits(result.model.eval(), test, get_backend("cpu-fp32"))
            logits = result.test_logits if b.engine == "eager" else predict_logits(
                torch_predictor(result.model, b), test, b)
            row.update(parity(ref_logits, logits, test.y))
        y_true, y_pred = test.y.cpu().numpy(), result.test_preds.cpu().numpy()
        cm, precision, recall, f1, support = classification_metrics(y_true, y_pred)
        limit = cfg.limit_test
        test_images = self.mnist.test_images[:limit] if limit else self.mnist.test_images
        tables = {
            "summary": pd.DataFrame([row]),
            "epochs": result.epochs,
            "curve": result.curve,
            "classes": pd.DataFrame({"class": range(10), "precision": precision, "recall": recall, "f1": f1,
                                     "support": support}),
            "confusion": pd.DataFrame([{"true": t, "pred": p, "count": int(cm[t, p])}
                                       for t in range(10) for p in range(10)]),
            "misclassified": misclassified(test_images, self.mnist.test_labels[: len(test_images)],
                                           result.test_preds),
        }
        files = None
        if recorder is not None:
            tables.update(recorder.tables())
            files = {"checkpoints.pt": recorder.checkpoint_bytes()}
        self._write(model, b, "train", tables, files=files)
        if recorder is not None:
            self._guarded(model, b, "dynamics", lambda: write_dynamics_cell(
                self.run_dir, f"{model}__{b.name}__train", self.mnist, DynamicsConfig(), progress=self.progress))
        return result.model

    def _infer_cell(self, model: str, b: Backend, bs: int, settings: dict, measure) -> None:
        """One inference cell: ``measure()`` returns the timing statistics of its engine."""
        cost = model_cost(model)
        with CellMemory("cpu" if b.engine == "onnxruntime" else b.device) as mem:
            stats = measure()
        row = {**self._row(model, b, "infer", bs), **settings, "params": cost["params"],
               "infer_flops_per_sample": cost["infer_flops_per_sample"], **stats, **mem.values}
        row["achieved_flops_per_s"] = cost["infer_flops_per_sample"] * row["samples_per_s"]
        self._write(model, b, "infer", {"summary": pd.DataFrame([row])}, bs)

    def _ort_cells(self, model: str, b: Backend, reference: torch.nn.Module, settings: dict) -> None:
        _, test = self.splits(model, "cpu")

        def export() -> OrtRunner:
            with tempfile.TemporaryDirectory() as tmp, CellMemory("cpu") as mem:
                path = Path(tmp) / f"{model}.onnx"
                facts = export_onnx(copy.deepcopy(reference), path)
                runner = OrtRunner(path, b.device, self.cfg.backend_options)
            ref_logits = predict_logits(reference.eval(), test, get_backend("cpu-fp32"))
            row = {**self._row(model, b, "export"), **settings, **facts, **mem.values,
                   "session_create_s": runner.session_create_s, "first_inference_s": runner.first_inference_s,
                   "ort_session_rss_bytes": runner.session_rss_bytes,
                   **parity(ref_logits, runner.logits(test.x), test.y)}
            self._write(model, b, "export", {"summary": pd.DataFrame([row])})
            return runner

        runner = self._guarded(model, b, "export", export)
        if runner is None:
            for bs in self.cfg.infer.batch_sizes:
                self._write(model, b, "infer", {"summary": pd.DataFrame([self._row(
                    model, b, "infer", bs, "skipped", "export failed")])}, bs)
            return
        for bs in self.cfg.infer.batch_sizes:
            self._guarded(model, b, "infer", lambda: self._infer_cell(
                model, b, bs, settings, lambda: benchmark_ort(runner.run, test.x, bs, self.cfg.infer)), bs)


def write_dynamics_cell(run_dir: Path, train_cell: str, mnist: Mnist, dcfg: DynamicsConfig,
                        progress: bool = False) -> Path:
    """Run the landscape analyses on one recorded training cell; writes ``<model>__<backend>__dynamics``."""
    cell = run_dir / "cells" / train_cell
    summary = pd.read_parquet(cell / "summary.parquet").iloc[0]
    steps, checkpoints = load_checkpoints(cell / "checkpoints.pt")
    b = get_backend(summary.backend)
    device = b.device if b.unavailable_reason() is None else "cpu"
    norm = summary.get("normalization", "minmax")
    train = make_split(mnist.train_images, mnist.train_labels, norm, device)
    test = make_split(mnist.test_images, mnist.test_labels, norm, device)
    if progress:
        print(f"dynamics: {summary.model} ({summary.backend}): landscape analyses on {device}", file=sys.stderr)
    landscape, timings = analyse(summary.model, steps, checkpoints, train, test, dcfg)
    row = {"model": summary.model, "backend": summary.backend, "device": device, "precision": summary.precision,
           "engine": summary.engine, "phase": "dynamics", "batch_size": None, "status": "ok", "reason": "",
           "checkpoints": len(steps), "landscape_subset": dcfg.subset, "grid": dcfg.grid, **timings}
    cell_id = f"{summary.model}__{summary.backend}__dynamics"
    return write_cell(run_dir, cell_id, {"summary": pd.DataFrame([row]), "landscape": landscape})
