"""One home per figure (bench.measure.figures): a cell's speed, its interval, the stability mark, the
resolution and a ratio's words are computed there and read everywhere else, and the rounds' stopping
rule judges the interval the report prints. Measured on the source, like tests/test_layout.py, so
a second definition fails here before it disagrees in front of a user."""

import ast

import numpy as np
import pandas as pd
import pytest

from bench.analysis.paired import rank_backends
from bench.measure import figures
from bench.measure import rounds as rounds_module
from bench.measure.rounds import Contender, measure_rounds
from tests.conftest import ROOT

HOME = ROOT / "bench" / "measure" / "figures.py"
# a cell's figures: the headline speeds, their intervals and the stability mark
FIGURES = {"samples_per_s", "train_samples_per_s", "samples_per_s_ci_low", "samples_per_s_ci_high",
           "train_samples_per_s_ci_low", "train_samples_per_s_ci_high", "unstable", "between_round_cv"}
# the functions that compute them, and the words of a ratio
FUNCTIONS = {"headline_rate", "speed_figures", "cell_speed", "round_values", "time_ratio", "resolution",
             "ratio_words", "speed_share", "with_stability", "verdict", "speed_words", "round_stats"}


def _sources():
    for package in ("bench", "reports", "models"):
        yield from (p for p in sorted((ROOT / package).rglob("*.py")) if p != HOME)


def _computes(value: ast.AST) -> bool:
    """Whether an expression computes a figure (a division or a comparison) rather than reading one."""
    return any(isinstance(n, (ast.BinOp, ast.Compare)) and not isinstance(getattr(n, "op", None), ast.Mod)
               for n in ast.walk(value))


def _written(tree: ast.AST):
    """(key, value expression, line) of every dict entry, keyword and subscript store with a string key."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            yield from ((k.value, v, node.lineno) for k, v in zip(node.keys, node.values)
                        if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(node, ast.Call):
            yield from ((k.arg, k.value, node.lineno) for k in node.keywords if k.arg)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant):
                    yield t.slice.value, node.value, node.lineno


def test_a_cells_figures_are_computed_in_one_module():
    second = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT)
        second += [f"{where}:{line} computes {key}" for key, value, line in _written(tree)
                   if key in FIGURES and _computes(value)]
        second += [f"{where}:{n.lineno} defines {n.name}" for n in ast.walk(tree)
                   if isinstance(n, ast.FunctionDef) and n.name in FUNCTIONS]
    assert not second, second


def test_the_one_module_defines_each_figure():
    tree = ast.parse(HOME.read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"headline_rate", "speed_figures", "time_ratio", "resolution", "ratio_words", "with_stability"} <= defined


def test_the_stopping_rule_judges_the_interval_the_report_prints(monkeypatch):
    """Synthetic rounds: the rounds' own value per round is ``figures.round_values`` of the rows they
    kept, the stopping rule stops on ``figures.time_ratio``, and the ranking (the report's table)
    prints that very ratio and interval."""
    rng = np.random.default_rng(3)
    monkeypatch.setattr(rounds_module, "time_calls", lambda fn, clock, n: ([fn() for _ in range(n)],) * 2)

    class Cfg:
        rounds, warmup_calls, budget_s, min_repeats, max_repeats, resolution_pct, max_time_s = 6, 0, 0.06, 6, 6, 2, 5

    ref = Contender("ref", lambda: 1e-3 * rng.lognormal(0, 0.01), "cpu")
    twin = Contender("twin", lambda: 1.1e-3 * rng.lognormal(0, 0.06), "cpu")
    measure_rounds([ref, twin], 4, Cfg(), reference="ref")
    rows = pd.concat([pd.DataFrame(c.rows).assign(backend=c.name) for c in (ref, twin)])
    for c in (ref, twin):
        kept = figures.round_values(rows[rows.backend == c.name])
        assert kept.to_dict() == pytest.approx(c.values)
    judged = figures.time_ratio(ref.values, twin.values)
    assert len(twin.values) > Cfg.rounds  # the rule asked for more rounds ...
    assert figures.resolution(judged["ratio_low"], judged["ratio_high"]) <= 0.02  # ... until this interval resolved
    values = pd.DataFrame([{"run_id": "r", "model": "mlp", "phase": "infer", "batch_size": 4, "backend": c.name,
                            "round": k, "value": v, "process": 0} for c in (ref, twin) for k, v in c.values.items()])
    shown = rank_backends(values, baseline="ref").set_index("backend").loc["twin"]
    assert (shown.time_vs_baseline, shown.time_vs_baseline_low, shown.time_vs_baseline_high) == pytest.approx(
        (judged["ratio"], judged["ratio_low"], judged["ratio_high"]))
    assert shown.samples_per_s == pytest.approx(figures.headline_rate(list(twin.values.values())))
    assert shown.vs_baseline == figures.ratio_words(judged["ratio"], judged["ratio_low"], judged["ratio_high"], "ref")


def test_the_stability_mark_reads_the_runs_typical_cell():
    s = pd.DataFrame({"run_id": "r", "phase": "infer", "status": "ok",
                      "between_round_cv": [0.02, 0.03, 0.025, 0.20, 0.08]})
    marked = figures.with_stability(s)
    assert marked.unstable.tolist() == [False, False, False, True, False]  # 0.08: over 3x typical, under 10%
    assert marked.unstable_why.iloc[3].startswith("rounds moved 20% (CV)")
