"""Comparisons a user can trust: the statistics on synthetic samples with a known truth, the
interleaving order, raw timings on disk, and ``mnist-bench compare`` on small real runs."""

import itertools

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.measure.rounds import Contender, interleave, measure_rounds
from bench.measure.stats import (
    balanced_orders,
    bootstrap_ci,
    mann_whitney_u,
    paired_ratio,
    unpaired_ratio,
    verdict,
)
from bench.results import read_run, write_cell, write_json

from .conftest import TINY

# -- statistics with a known answer ---------------------------------------------------------------


@pytest.mark.parametrize("rounds", [5, 10])
def test_paired_interval_covers_the_true_ratio_at_about_the_nominal_rate(rounds):
    rng = np.random.default_rng(7)
    trials, covered = 300, 0
    for t in range(trials):
        drift = rng.lognormal(0, 0.3, rounds)  # the machine's speed, shared by both sides of a round
        base = drift * rng.lognormal(0, 0.04, rounds)
        other = 1.25 * drift * rng.lognormal(0, 0.04, rounds)
        r = paired_ratio(base, other, seed=t)
        covered += r["ratio_low"] <= 1.25 <= r["ratio_high"]
    assert 0.90 <= covered / trials <= 1.0


def test_pairing_cancels_drift_that_an_unpaired_ratio_cannot():
    rng = np.random.default_rng(3)
    drift = np.linspace(1, 2, 8)  # the machine slows down twofold over the run
    base, other = drift * rng.lognormal(0, 0.01, 8), 1.1 * drift * rng.lognormal(0, 0.01, 8)
    paired, unpaired = paired_ratio(base, other), unpaired_ratio(base, other)
    assert paired["ratio_low"] > 1.05 and paired["ratio_high"] < 1.15
    assert unpaired["ratio_low"] < 1 < unpaired["ratio_high"]  # drift swamps it


def test_u_test_false_positive_rate_is_near_5_percent():
    rng = np.random.default_rng(11)
    trials = 600
    hits = sum(mann_whitney_u(rng.normal(size=10), rng.normal(size=10))[1] < 0.05 for _ in range(trials))
    assert 0.02 <= hits / trials <= 0.08


def test_u_test_exact_and_tied_values():
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0 and p == pytest.approx(2 / 252)  # the most extreme of C(10, 5) orderings, two-sided
    u, p = mann_whitney_u([1, 1, 2, 2], [1, 2, 2, 3])
    assert 0 < p <= 1 and 0 <= u <= 16


def test_bootstrap_interval_of_a_constant_is_the_constant_and_one_round_has_none():
    assert bootstrap_ci([2.0] * 6) == (2.0, 2.0)
    one = paired_ratio([1.0], [1.2])
    assert one["ratio"] == pytest.approx(1.2) and np.isnan(one["ratio_low"])
    assert verdict(one["ratio"], one["ratio_low"], one["ratio_high"]).startswith("too few rounds")


def test_verdict_words():
    assert verdict(0.8, 0.75, 0.85) == "faster by 25% [18%, 33%]"
    assert verdict(1.1, 1.05, 1.2) == "slower by 10% [5%, 20%]"
    assert verdict(1.01, 0.97, 1.04).startswith("no significant difference")


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_interleaving_order_is_balanced_in_position_and_in_what_came_before(n):
    rows = balanced_orders(n)
    assert all(sorted(r) == list(range(n)) for r in rows)
    positions = np.zeros((n, n), int)
    for r in rows:
        for pos, item in enumerate(r):
            positions[item, pos] += 1
    assert (positions == positions[0, 0]).all()
    before = {pair: 0 for pair in itertools.permutations(range(n), 2)}
    for r in rows:
        for a, b in zip(r, r[1:]):
            before[a, b] += 1
    assert len(set(before.values())) == 1


def test_measure_rounds_keeps_every_call_and_takes_a_failing_contender_out():
    class Cfg:
        rounds, warmup_calls, budget_s, min_repeats, max_repeats = 4, 1, 0.004, 8, 40

    calls = []

    def broken():
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("broke in round 1")

    ok, bad = Contender("ok", lambda: sum(range(100)), "cpu"), Contender("bad", broken, "cpu")
    measure_rounds([ok, bad], 8, Cfg())
    rows = pd.DataFrame(ok.rows)
    assert sorted(rows["round"].unique()) == [0, 1, 2, 3] and (rows.groupby("round").size() >= 2).all()
    assert (rows.samples == 8).all() and (rows.seconds > 0).all() and rows.timestamp_s.is_monotonic_increasing
    assert bad.failure == ("error", "RuntimeError: broke in round 1")


def test_interleave_advances_generators_in_balanced_rounds():
    log = []

    def run(name, blocks):
        for i in range(blocks):
            log.append((name, i))
            yield i
        return name.upper()

    results = interleave({"a": run("a", 3), "b": run("b", 2), "c": run("c", 1)})
    assert results == {"a": "A", "b": "B", "c": "C"}
    assert [n for n, _ in log[:3]] == ["a", "b", "c"] and log[3][0] in ("b", "a")


def test_raw_timings_round_trip(tmp_path):
    write_json(tmp_path / "meta.json", {"run_id": "r"})
    timings = pd.DataFrame({"round": [0, 0, 1], "process": 0, "position": [0, 0, 1], "call": [0, 1, 0],
                            "timestamp_s": [1.0, 1.1, 2.0], "seconds": [0.01, 0.012, 0.011], "samples": 32})
    write_cell(tmp_path, "mlp__cpu-fp32__infer_bs32", {"summary": pd.DataFrame([{"model": "mlp"}]),
                                                       "timings": timings})
    back = read_run(tmp_path)["timings"].drop(columns=["run_id", "cell_id"])
    pd.testing.assert_frame_equal(back, timings)


# -- compare on real runs --------------------------------------------------------------------------

def _values(mnist_path, out, backends):
    args = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY[::2]], TINY[1::2]))
    return {**args, "models": "mlp", "backends": backends, "data_dir": str(mnist_path), "out": str(out),
            "batch_sizes": "1,32", "rounds": 6, "budget_s": 0.12}


@pytest.fixture(scope="module")
def two_runs(mnist_path, tmp_path_factory):
    """The same small configuration twice, back to back (A/A)."""
    from benchmarks.statistics_check import run

    out = tmp_path_factory.mktemp("aa")
    values = _values(mnist_path, out, "cpu-fp32,onnxruntime-cpu")
    return run(values, out / "a"), run(values, out / "b")


def test_compare_renders_and_finds_no_difference_between_identical_runs(two_runs, tmp_path, capsys):
    first, second = two_runs
    assert main(["compare", str(first), str(second), "--output", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "time ratio [95% CI]" in out and "geometric-mean speedup" in out
    html = (tmp_path / "c.html").read_text()
    assert "compare-table" in html and "data:image/svg+xml;base64," in html and "Environment differences" in html
    from reports.compare import compare

    m = compare([first, second]).matched
    assert len(m) == 5  # train + 2 batch sizes x (cpu-fp32) + 2 x (onnxruntime-cpu)
    # an interval and a verdict in words for every cell (the A/A target itself is
    # benchmarks/statistics_check.py's: two runs of a loaded machine differ by more than chance)
    assert (m.time_ratio_low <= m.time_ratio_high).all() and (m.time_ratio > 0).all()
    assert m.verdict.str.contains("faster|slower|no significant difference").all()


def test_fail_above_exits_3_on_a_significant_slowdown(mnist_path, two_runs, tmp_path, capsys, monkeypatch):
    from bench.backends import BACKENDS, Backend
    from benchmarks.statistics_check import SlowedEngine

    # the same backend name, now twice as slow: a regression a CI gate must catch even on a loaded machine
    slowed = SlowedEngine(slowdown=2.0)
    monkeypatch.setitem(BACKENDS, "onnxruntime-cpu", Backend("onnxruntime-cpu", slowed, "cpu", "fp32"))
    from benchmarks.statistics_check import run

    regressed = run(_values(mnist_path, tmp_path, "cpu-fp32,onnxruntime-cpu"), tmp_path / "slow")
    first = two_runs[0]
    rc = main(["compare", str(first), str(regressed), "--fail-above", "0", "--output", str(tmp_path / "c.html")])
    err = capsys.readouterr().err
    assert rc == 3 and "regression:" in err and "onnxruntime-cpu" in err
    assert main(["compare", str(first), str(regressed), "--fail-above", "1000",
                 "--output", str(tmp_path / "c2.html")]) == 0


def test_compare_bad_input_exit_2(two_runs, tmp_path, capsys):
    assert main(["compare", str(two_runs[0])]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main(["compare", *map(str, two_runs), "--baseline", "nope"]) == 2
    assert "legal values" in capsys.readouterr().err
    assert main(["compare", *map(str, two_runs), "--fail-above", "-5"]) == 2


def test_aa_inside_a_run_and_power_on_a_small_configuration(mnist_path, tmp_path):
    """Tolerant versions of the targets (the full ones: benchmarks/statistics_check.py): on a
    small, possibly loaded machine no interval may claim a difference that is not there, and a
    real 10% slowdown is seen."""
    from benchmarks.statistics_check import aa_inside_run, power

    values = {**_values(mnist_path, tmp_path, "cpu-fp32"), "rounds": 8, "budget_s": 0.3}
    aa = aa_inside_run(values, tmp_path)
    twin = aa["table"]
    assert aa["cells"] == 3
    # identical backends: each interval contains 1, or its estimate is close to 1
    assert ((twin.time_vs_baseline_low <= 1.02) & (twin.time_vs_baseline_high >= 0.98)
            | twin.time_vs_baseline.between(0.9, 1.1)).all(), twin
    pw = power(values, tmp_path)
    slowed = pw["table"]
    assert pw["cells"] == 2 and not (slowed.time_vs_baseline_high < 1).any()  # never called faster
    assert pw["detected"] >= 0.5, slowed



def test_interleaved_training_gives_the_same_weights_as_training_alone(mnist_path):
    """Dropout draws from each run's own random stream, whatever trains between its blocks."""
    import torch

    from bench.backends import get_backend
    from bench.config import TrainConfig
    from bench.data import make_split, resolve_mnist
    from bench.dynamics.recording import flat_params
    from bench.engines import BackendOptions
    from bench.train import train_blocks, train_model

    m = resolve_mnist(mnist_path)
    train = make_split(m.train_images, m.train_labels, "minmax", "cpu", 640)
    test = make_split(m.test_images, m.test_labels, "minmax", "cpu", 200)
    cfg, b, opts = TrainConfig(epochs=1, batch_size=32, evals_per_epoch=1, warmup_steps=2), get_backend("cpu-fp32"), \
        BackendOptions()
    alone = train_model("mlp", b, train, test, cfg, 3, opts).model
    runs = {"mlp": train_blocks("mlp", b, train, test, cfg, 3, opts, block_steps=4),
            "cnn": train_blocks("cnn", b, train, test, cfg, 5, opts, block_steps=3)}
    together = interleave(runs)
    assert len(together["mlp"].blocks) == 5 and together["mlp"].blocks["round"].tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(flat_params(alone), flat_params(together["mlp"].model))


def test_machine_warnings_name_steal_drift_stalls_and_load():
    from bench.measure.machine import Machine, warnings_for

    calm = pd.DataFrame({"control_ms": [1.0, 1.01, 0.99], "control_min_ms": [0.98, 0.99, 0.97],
                         "steal_frac": [0.0, 0.01, 0.0], "loadavg_1m": [0.5, 0.6, 0.5]})
    assert warnings_for(calm, cpu_count=2) == []
    busy = calm.assign(steal_frac=[0.0, 0.12, 0.0], control_min_ms=[1.0, 1.6, 1.0], control_ms=[1.0, 9.0, 8.0],
                       loadavg_1m=[4.0, 5.0, 4.0])
    words = " ".join(warnings_for(busy, cpu_count=2))
    assert "steal time reached 12%" in words and "drifted" in words and "stalled" in words and "busy" in words
    row = Machine().round("mlp infer bs1", 0)
    assert row["control_min_ms"] <= row["control_ms"] and row["group"] == "mlp infer bs1"
