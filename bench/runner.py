"""The scheduler: decides which cells run in which order, and hands their tables to the writer.

config -> data -> cells -> result files. Each cell is written as soon as it completes; a backend
that cannot run here becomes skipped rows with the reason; a cell that fails becomes an error (or
oom) row and the run goes on."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from bench.backends import REFERENCE, Backend, get_backend, probe
from bench.cells import calibration_images, guarded, infer_cell, prepare_cell, train_cell
from bench.config import RunConfig
from bench.data import Split, make_split, resolve_mnist
from bench.dynamics.analyses import DynamicsConfig
from bench.dynamics.cell import dynamics_cell
from bench.dynamics.recording import DynamicsRecorder
from bench.meta import collect_metadata, now_iso
from bench.profiling import ProfileConfig, profile_cell
from bench.results import RunWriter, cell_id, check_writable, new_run_id, write_json, write_samples


class Runner:
    def __init__(self, cfg: RunConfig, argv: list[str] | None = None, progress: bool = True) -> None:
        self.cfg, self.argv, self.progress = cfg, argv, progress
        self._splits: dict[tuple, tuple[Split, Split]] = {}
        self._recorded: set[str] = set()  # models whose dynamics are recorded

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
                    self.writer.write_status(model, b, "profile", "skipped",
                                             reason or f"{b.engine.name} does not train; profiling covers training")
                    continue
                bs, settings = self.cfg.train_for(model).batch_size, b.configure(self.cfg.backend_options)
                self._cell(model, b, "profile", lambda: profile_cell(
                    model, b, self.splits(model, b.device)[0], bs, self.cfg.seed, self.cfg.backend_options, settings,
                    pcfg, self.writer.run_dir / "profile"), batch_size=bs)

        return self._finish(body)

    def splits(self, model: str, device: str) -> tuple[Split, Split]:
        t = self.cfg.train_for(model)
        key = (device, t.normalization, t.limit_train, t.limit_test)
        if key not in self._splits:
            m = self.mnist
            self._splits[key] = (make_split(m.train_images, m.train_labels, t.normalization, device, t.limit_train),
                                 make_split(m.test_images, m.test_labels, t.normalization, device, t.limit_test))
        return self._splits[key]

    def _start(self) -> list[tuple[Backend, str | None]]:
        cfg = self.cfg
        check_writable(cfg.out)
        probed = probe(cfg.backends)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.mnist = resolve_mnist(cfg.data_dir)
        run_id = new_run_id()
        self.writer = RunWriter(cfg.out / run_id)
        self.writer.run_dir.mkdir(parents=True)
        self.meta = {**collect_metadata(cfg, self.argv), "run_id": run_id, "data_source": self.mnist.source,
                     "start_time": now_iso(), "status": "running"}
        write_json(self.writer.run_dir / "meta.json", self.meta)
        write_samples(self.writer.run_dir, self.mnist)
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
            write_json(self.writer.run_dir / "meta.json", self.meta)
        return self.writer.run_dir

    def _cell(self, model: str, b: Backend, phase: str, body, batch_size=None, files=None, reason=""):
        """Run one cell guarded and write its tables. ``body`` returns its tables, or (tables, value):
        the value (a trained model, a prepared engine) is returned; None when the cell failed."""
        def run_and_write():
            out = body()
            tables, value = out if isinstance(out, tuple) else (out, True)
            self.writer.write(model, b, phase, tables, batch_size, files() if files else None, reason)
            return value
        return guarded(self.writer, model, b, phase, run_and_write, batch_size, verbose=self.progress)

    def _run_model(self, model: str, probed) -> None:
        cfg, sizes = self.cfg, self.cfg.infer.batch_sizes
        reference = None  # (CPU copy of trained weights, whether they are the fp32 reference backend's)
        for b, reason in sorted(probed, key=lambda p: not p[0].trains):  # trainers first: they make the reference
            if reason:
                for phase, bs in [("train" if b.trains else "export", None)] + [("infer", bs) for bs in sizes]:
                    self.writer.write_status(model, b, phase, "skipped", reason, bs)
                continue
            settings = b.configure(cfg.backend_options)
            train, test = self.splits(model, b.device)
            if b.trains:
                source = self._train(model, b, settings)
                if source is None:
                    continue
                if reference is None or (b.is_reference and not reference[1]):
                    reference = (copy.deepcopy(source).cpu(), b.is_reference)
                prepared = guarded(self.writer, model, b, "export", lambda: b.engine.prepare(
                    source, b, cfg.backend_options, calibration_images(train)), verbose=self.progress)
            else:
                if reference is None:
                    ref = get_backend(REFERENCE)
                    trained = self._train(model, ref, ref.configure(cfg.backend_options),
                                          reason="reference for the non-training backends")
                    reference = (trained.cpu(), True) if trained is not None else None
                prepared = reference and self._cell(model, b, "export", lambda: prepare_cell(
                    b, reference[0], cfg.backend_options, settings, train, test))
            for bs in sizes:
                if prepared is None:
                    why = "preparing the model failed" if reference else "no trained model to prepare"
                    self.writer.write_status(model, b, "infer", "skipped", why, bs)
                else:
                    self._cell(model, b, "infer", lambda: infer_cell(model, b, prepared, test.x, bs, cfg.infer,
                                                                      settings), bs)

    def _train(self, model: str, b: Backend, settings: dict, reason: str = "") -> torch.nn.Module | None:
        cfg, recorder = self.cfg.train_for(model), None
        train, test = self.splits(model, b.device)
        if self.cfg.dynamics and model not in self._recorded:  # the first backend that trains each model
            self._recorded.add(model)
            recorder = DynamicsRecorder(cfg.epochs * train.train_steps(cfg.batch_size), self.cfg.dynamics_every)
        images = self.mnist.test_images[: len(test)]
        trained = self._cell(model, b, "train", lambda: train_cell(
            model, b, cfg, train, test, self.cfg.seed, self.cfg.backend_options, settings, images, recorder,
            self.progress), files=recorder and recorder.checkpoint_files, reason=reason)
        if trained is not None and recorder is not None:
            dcfg = DynamicsConfig(grid=self.cfg.grid, subset=self.cfg.subset)
            cell_dir = self.writer.run_dir / "cells" / cell_id(model, b.name, "train")
            self._cell(model, b, "dynamics", lambda: dynamics_cell(cell_dir, self.mnist, dcfg, self.progress))
        return trained
