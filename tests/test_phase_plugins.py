"""A phase from outside the package (tests/plugin_phase.py): one module that declares its option,
the cells it plans, the table its cells write and registers itself. With no edit elsewhere it is a
run option and a TOML key, planned, run, resumed, exported and rendered -- the last two in a process
that never imports the plugin."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import bench.scheduling.runner  # noqa: F401 - registers the built-in phases
from bench.cli import build_parser
from bench.config.build import build_config, config_from_dict, defaults_toml
from bench.engines.backends import REFERENCE, trainers
from bench.phase import plan, registered
from tests.conftest import ROOT, TINY
from tests.plugin_phase import NormsOptions
from tests.plugin_phase import registered as norms_registered


def _run_groups() -> dict[str, list[str]]:
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    return {g.title: [a.dest for a in g._group_actions] for g in run._action_groups}


def test_a_phase_declares_its_option_and_its_cells_and_runs_after_the_built_in_ones():
    values = {"models": "mlp", "backends": "cpu-fp32,onnxruntime-cpu", "batch_sizes": "1"}
    with norms_registered():
        assert _run_groups()["weight norms"] == ["norms"]
        assert "norms = false" in defaults_toml()
        assert [p.name for p in registered()][-1] == "norms"
        cfg = build_config({**values, "norms": True})
        assert cfg.options_of(NormsOptions).norms
        stored = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
        assert config_from_dict(stored).options_of(NormsOptions).norms
        ids = [k.id for k in plan(cfg, trainers(), REFERENCE)]
        assert ids[-1] == "mlp__cpu-fp32__norms" and "mlp__onnxruntime-cpu__norms" not in ids
        assert "mlp__cpu-fp32__norms" not in [k.id for k in plan(build_config(values), trainers(), REFERENCE)]
    assert "weight norms" not in _run_groups()
    with pytest.raises(Exception, match="unknown config key"):  # without the plugin, its option is unknown
        build_config({**values, "norms": True})


@pytest.mark.slow
def test_a_plugin_phase_is_run_resumed_exported_and_rendered(mnist_path, tmp_path):
    env = {**os.environ, "MNIST_BENCH_PLUGINS": "tests.plugin_phase"}
    plain = {k: v for k, v in os.environ.items() if k != "MNIST_BENCH_PLUGINS"}

    def bench(*args: str, environ: dict = env) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=environ, capture_output=True,
                              text=True)

    made = bench("run", "--models", "mlp", "--backends", "cpu-fp32", "--norms", "--data-dir", str(mnist_path),
                 "--out", str(tmp_path), "--no-report", "-q", *TINY)
    assert made.returncode == 0, made.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    cell = run_dir / "cells" / "mlp__cpu-fp32__norms"
    norms = pd.read_parquet(cell / "weight_norms.parquet")
    assert len(norms) >= 2 and (norms.l2_norm > 0).all()
    assert "mlp__cpu-fp32__norms" in json.loads((run_dir / "meta.json").read_text())["plan"]

    trained = (run_dir / "cells" / "mlp__cpu-fp32__train" / "summary.parquet").read_bytes()
    shutil.rmtree(cell)  # the run killed before its last phase
    resumed = bench("run", "--resume", str(run_dir), "--no-report", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert pd.read_parquet(cell / "weight_norms.parquet").equals(norms)  # the same trained weights, loaded
    assert (run_dir / "cells" / "mlp__cpu-fp32__train" / "summary.parquet").read_bytes() == trained

    exported = bench("export", str(run_dir), "--format", "csv", "--output", str(tmp_path / "x"), environ=plain)
    assert exported.returncode == 0, exported.stderr[-2000:]
    table = pd.read_csv(tmp_path / "x" / "phase-norms.csv")
    assert list(table[["backend", "status"]].iloc[0]) == ["cpu-fp32", "ok"] and table.parameters.iloc[0] > 0
    shown = bench("report", str(run_dir), "--output", str(tmp_path / "r.html"), environ=plain)
    assert shown.returncode == 0, shown.stderr[-2000:]
    page = (tmp_path / "r.html").read_text()
    assert "Weight norms" in page and "weight_norms" in page and norms.layer.iloc[0] in page
    assert "not read" not in shown.stderr


def test_each_built_in_phase_names_a_section_the_report_has():
    import bench.distributed.launch  # noqa: F401 - registers the data-parallel phase
    from reports.html import SECTIONS

    named = {p.name: p.section for p in registered()}
    assert {"train", "dynamics", "tta", "infer", "serve", "distributed"} <= set(named)
    assert all(section in {s.name for s in SECTIONS} for section in named.values() if section)
