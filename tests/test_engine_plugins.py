"""An engine from outside the package (tests/plugin_engine.py): one module and its registry rows. Its
own option is a flag and a TOML key of its own group, reaches its backends only, and a run made
with it renders in a process that never imports the plugin, nor any engine."""

import json
import os
import subprocess
import sys

import pytest

from bench.cli import build_parser
from bench.config.build import build_config, config_from_dict
from bench.engines.backends import get_backend
from tests.conftest import ROOT, TINY
from tests.plugin_engine import ScaledOptions, registered


def test_an_engine_option_is_declared_by_its_engine_and_applies_to_its_backends_only(tmp_path, capsys):
    with registered():
        run = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
        groups = {g.title: [a.dest for a in g._group_actions] for g in run._action_groups}
        assert groups["scaled-eager options"] == ["scaled_factor"]
        assert "scaled_factor" not in groups["backend options"]
        toml = tmp_path / "c.toml"
        toml.write_text('scaled_factor = 2.5\nbackends = "cpu-fp32,cpu-fp32-scaled,onnxruntime-cpu"\n')
        for given in ({"config": str(toml)}, {"scaled_factor": "2.5", "backends": "cpu-fp32,cpu-fp32-scaled"}):
            cfg = build_config(given)
            assert cfg.backend_options.of(ScaledOptions).scaled_factor == 2.5
            stored = json.loads(json.dumps(__import__("dataclasses").asdict(cfg), default=str))
            assert config_from_dict(stored).backend_options.of(ScaledOptions).scaled_factor == 2.5
        settings = {b: get_backend(b).configure(cfg.backend_options) for b in ("cpu-fp32", "cpu-fp32-scaled",
                                                                                 "onnxruntime-cpu")}
        assert settings["cpu-fp32-scaled"]["scaled_factor"] == 2.5
        assert "scaled_factor" not in settings["cpu-fp32"] and "scaled_factor" not in settings["onnxruntime-cpu"]
        assert "ort_opt_level" not in settings["cpu-fp32-scaled"]  # ONNX Runtime's options stay its own
        capsys.readouterr()
        build_config({"backends": "cpu-fp32", "scaled_factor": 3})
        assert "scaled_factor applies to cpu-fp32-scaled, none of which this run has" in capsys.readouterr().err
    with pytest.raises(Exception, match="unknown config key"):  # without the plugin, its option is unknown
        build_config({"scaled_factor": 2})


@pytest.mark.slow
def test_a_run_with_a_plugin_backend_renders_without_the_plugin(mnist_path, tmp_path):
    env = {**os.environ, "MNIST_BENCH_PLUGINS": "tests.plugin_engine"}
    made = subprocess.run([sys.executable, "-m", "bench", "run", "--models", "mlp", "--backends",
                           "cpu-fp32,cpu-fp32-scaled", "--scaled-factor", "2", "--data-dir", str(mnist_path),
                           "--out", str(tmp_path), "--no-report", "-q", *TINY], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    plain = {k: v for k, v in os.environ.items() if k != "MNIST_BENCH_PLUGINS"}
    script = ("import sys; from pathlib import Path; from reports.html import render_report; "
              f"render_report([Path({str(run_dir)!r})], Path({str(tmp_path / 'r.html')!r})); "
              "loaded = sorted(m for m in sys.modules if m.startswith(('bench.engines', 'tests')));"
              "print('loaded:', loaded)")
    shown = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=plain, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "loaded: []" in shown.stdout  # no engine, no plugin: the run's own files were enough
    page = (tmp_path / "r.html").read_text()
    assert "cpu-fp32-scaled" in page and "scaled_factor" in page
    order = json.loads((run_dir / "meta.json").read_text())["catalog"]["backends"]
    assert order.index("cpu-fp32") < order.index("cpu-fp32-scaled")
    assert subprocess.run([sys.executable, "-m", "bench", "report", str(run_dir), "--output",
                           str(tmp_path / "cli.html")], cwd=ROOT, env=plain, capture_output=True).returncode == 0
