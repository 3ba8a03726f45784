"""The plan: the cells a configuration asks for, as typed keys, stored with the run and read back."""

import json
import shutil

import pandas as pd
import pytest

import bench.scheduling.runner  # noqa: F401 - registers the built-in phases the plan is made of
from bench.config.build import build_config
from bench.engines.backends import REFERENCE, trainers
from bench.phase import plan
from bench.storage.keys import CellKey
from bench.storage.plan import missing_cells, stored_plan, unplanned_cells

from .conftest import TINY


def _ids(values: dict) -> list[str]:
    return [k.id for k in plan(build_config(values), trainers(), REFERENCE)]


def test_a_run_plans_each_phase_its_configuration_asks_for_in_the_order_they_run():
    assert _ids({"models": "mlp", "backends": "cpu-fp32,onnxruntime-cpu", "batch_sizes": "1,8", "seeds": 3,
                 "scenarios": "server"}) == [
        "mlp__cpu-fp32__train", "mlp__cpu-fp32__tta", "mlp__cpu-fp32__infer_bs1", "mlp__cpu-fp32__infer_bs8",
        "mlp__onnxruntime-cpu__export", "mlp__onnxruntime-cpu__infer_bs1", "mlp__onnxruntime-cpu__infer_bs8",
        "mlp__cpu-fp32__serve", "mlp__onnxruntime-cpu__serve"]


def test_without_a_training_backend_the_reference_is_planned_to_train():
    assert _ids({"models": "cnn", "backends": "onnxruntime-cpu", "batch_sizes": "4"})[:2] == [
        "cnn__cpu-fp32__train", "cnn__onnxruntime-cpu__export"]


def test_a_torchrun_run_plans_one_training_cell_per_world_size():
    import bench.distributed.launch  # noqa: F401 - registers the data-parallel phase

    assert _ids({"models": "mlp", "backends": "cpu-fp32", "launcher": "torchrun", "scaling": "1,2"}) == [
        "mlp__cpu-fp32__train_ws1", "mlp__cpu-fp32__train_ws2"]


def test_the_stored_plan_reads_back_and_checks_the_cells_on_disk():
    keys = plan(build_config({"models": "mlp", "backends": "cpu-fp32", "batch_sizes": "1"}), trainers(), REFERENCE)
    meta = json.loads(json.dumps({"plan": [k.id for k in keys]}))
    assert stored_plan(meta) == keys and all(isinstance(k, CellKey) for k in keys)
    present = {"mlp__cpu-fp32__train", "mlp__machine__infer_bs1", "mlp__cpu-fp32__dynamics", "cnn__cpu-fp32__train"}
    assert [k.id for k in missing_cells(meta, present)] == ["mlp__cpu-fp32__infer_bs1"]
    # machine rows and analyses are not cells of the plan
    assert unplanned_cells(meta, present) == ["cnn__cpu-fp32__train"]


@pytest.mark.slow
def test_a_resumed_two_process_run_times_only_the_batch_sizes_the_plan_lacks(mnist_path, tmp_path, monkeypatch):
    """A run killed during inference (its bs32 cells gone, bs1 kept) resumed with --processes 2: the
    rounds of this process and the worker's job cover bs32 alone, and the bs1 cells stay as written."""
    import bench.scheduling.infer_phase as runner_module
    from bench.cli import main
    from bench.scheduling import phases

    args = ["--models", "mlp", "--backends", "cpu-fp32,cpu-bf16", "--data-dir", str(mnist_path),
            "--out", str(tmp_path), "--no-report", *TINY[:-2], "--processes", "2"]
    assert main(["run", *args]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    cells = run_dir / "cells"
    backends = ("cpu-fp32", "cpu-bf16")
    kept = {b: (cells / f"mlp__{b}__infer_bs1" / "timings.parquet").read_bytes() for b in backends}
    for b in backends:
        shutil.rmtree(cells / f"mlp__{b}__infer_bs32")
    timed, jobs = [], []
    real_here, real_workers = phases.rounds_here, runner_module.rounds_in_workers
    monkeypatch.setattr(runner_module, "rounds_here", lambda ctx, model, bs, *rest: timed.append(bs) or real_here(
        ctx, model, bs, *rest))
    monkeypatch.setattr(runner_module, "rounds_in_workers", lambda job, *rest, **kw: jobs.append(job.batch_sizes)
                        or real_workers(job, *rest, **kw))
    assert main(["run", "--resume", str(run_dir), "--no-report"]) == 0
    assert timed == [32] and jobs == [[32]]
    assert {b: (cells / f"mlp__{b}__infer_bs1" / "timings.parquet").read_bytes() for b in backends} == kept
    t = pd.read_parquet(cells / "mlp__cpu-bf16__infer_bs32" / "timings.parquet")
    assert t.process.nunique() == 2  # the missing batch size is timed in both processes again
