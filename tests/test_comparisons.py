"""Comparisons a user can trust: the statistics on synthetic samples with a known truth, the
interleaving order, raw timings on disk, and ``mnist-bench compare`` on small real runs."""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.measure.between_processes import between_process_sigma
from bench.measure.figures import ratio_words, resolution, time_ratio
from bench.measure.rounds import Contender, balanced_orders, interleave, measure_rounds
from bench.measure.stats import bootstrap_ci, quotient, widened
from bench.storage.results import read_run, write_cell, write_json

from .conftest import TINY

# -- statistics with a known answer ---------------------------------------------------------------


def paired_ratio(base, other) -> dict:
    """The time ratio of rounds measured side by side (round i of each)."""
    return time_ratio(dict(enumerate(base)), dict(enumerate(other)))


def unpaired_ratio(base, other) -> dict:
    """The time ratio of rounds with none in common (two runs): each side resampled on its own."""
    return time_ratio(dict(enumerate(base)), {len(base) + i: v for i, v in enumerate(other)})


@pytest.mark.parametrize("rounds", [5, 10])
def test_paired_interval_covers_the_true_ratio_at_about_the_nominal_rate(rounds):
    rng = np.random.default_rng(7)
    trials, covered = 300, 0
    for _ in range(trials):
        drift = rng.lognormal(0, 0.3, rounds)  # the machine's speed, shared by both sides of a round
        base = drift * rng.lognormal(0, 0.04, rounds)
        other = 1.25 * drift * rng.lognormal(0, 0.04, rounds)
        r = paired_ratio(base, other)
        covered += r["ratio_low"] <= 1.25 <= r["ratio_high"]
    assert 0.90 <= covered / trials <= 1.0


def test_pairing_cancels_drift_that_an_unpaired_ratio_cannot():
    rng = np.random.default_rng(3)
    drift = np.linspace(1, 2, 8)  # the machine slows down twofold over the run
    base, other = drift * rng.lognormal(0, 0.01, 8), 1.1 * drift * rng.lognormal(0, 0.01, 8)
    paired, unpaired = paired_ratio(base, other), unpaired_ratio(base, other)
    assert 1.05 < paired["ratio_low"] < 1.1 < paired["ratio_high"] < 1.2
    assert unpaired["ratio_low"] < 1 < unpaired["ratio_high"]  # drift swamps it


def test_bootstrap_interval_of_a_constant_is_the_constant_and_one_round_has_none():
    assert bootstrap_ci([2.0] * 6) == (2.0, 2.0)
    one = paired_ratio([1.0], [1.2])
    assert one["ratio"] == pytest.approx(1.2) and np.isnan(one["ratio_low"])
    assert ratio_words(one["ratio"], one["ratio_low"], one["ratio_high"], "x").startswith("unjudged: too few rounds")


def test_verdict_words_state_the_resolution_of_a_tie():
    assert ratio_words(0.8, 0.75, 0.85, "a") == "1.25× faster than a [1.18, 1.33]"
    assert ratio_words(1.1, 1.05, 1.2, "a") == "1.10× slower than a [1.05, 1.20]"
    assert ratio_words(1.01, 0.97, 1.04, "a") == "tie with a (0.99× [0.96, 1.03]; any difference below 3.5% would show)"
    assert resolution(0.9, 1.1) == pytest.approx((1.1 / 0.9) ** 0.5 - 1) and np.isnan(resolution(np.nan, 1))


def test_paired_interval_ignores_a_few_wild_rounds():
    """A round hit by a stall on one side (x20) moves a rank, not the interval: the interval of the
    quotient of medians over 30 rounds with 3 wild ones stays within +-3% of the true 1.10."""
    rng = np.random.default_rng(5)
    base = rng.lognormal(0, 0.01, 30)
    other = 1.10 * base * rng.lognormal(0, 0.01, 30)
    other[[3, 11, 20]] *= 20
    r = paired_ratio(base, other)
    assert 1.07 < r["ratio_low"] < 1.10 < r["ratio_high"] < 1.13


def _two_process_cell(rng, sigma_process: float, rounds: int = 6, ratio: float = 1.3):
    """One backend's per-round log ratios to the reference in 2 processes: each process's level
    moves by ``sigma_process`` (log sd), each round by 3%."""
    procs = np.repeat([0, 1], rounds)
    logs = np.log(ratio) + rng.normal(0, sigma_process, 2)[procs] + rng.normal(0, 0.03, procs.size)
    return logs, procs


def test_between_process_sigma_recovers_the_process_variation_and_ignores_round_noise():
    """Pooled over 4 backends x 200 runs, the excess variance between processes estimates the
    process level's sd (8%) within 15%; with no process level it stays near 0, the rounds' noise
    (3%) being subtracted."""
    rng = np.random.default_rng(5)
    moved = [between_process_sigma([_two_process_cell(rng, 0.08) for _ in range(4)]) for _ in range(200)]
    assert moved[0][1] == 4  # one degree of freedom per backend with two processes
    assert 0.068 < np.sqrt(np.mean([s**2 for s, _ in moved])) < 0.092
    still = [between_process_sigma([_two_process_cell(rng, 0.0) for _ in range(4)]) for _ in range(200)]
    assert np.sqrt(np.mean([s**2 for s, _ in still])) < 0.02
    assert between_process_sigma([(np.zeros(6), np.zeros(6))]) == (0.0, 0)  # one process: nothing to say


def test_an_interval_from_two_processes_holds_a_fresh_run_of_the_same_machine():
    """Runs of 2 processes, processes moving by 6%: the in-run interval widened by the pooled
    variation holds the machine's ratio at about the nominal rate, and the rounds alone do not."""
    rng = np.random.default_rng(9)
    trials, widened_hits, rounds_hits = 300, 0, 0
    for _ in range(trials):
        cells = [_two_process_cell(rng, 0.06) for _ in range(4)]
        r = paired_ratio(np.ones(cells[0][0].size), np.exp(cells[0][0]))
        w = widened(r, *between_process_sigma(cells), 1 / np.sqrt(2))
        widened_hits += w["ratio_low"] <= 1.3 <= w["ratio_high"]
        rounds_hits += r["ratio_low"] <= 1.3 <= r["ratio_high"]
    assert widened_hits / trials >= 0.9 and rounds_hits / trials < 0.7


def test_rank_backends_widens_a_group_measured_in_two_processes():
    """The same rounds, read as one process and as two whose ratio differs by 20%: only the second
    is widened (interval_from says so), and its estimate stays the quotient of the medians."""
    from bench.analysis.paired import rank_backends

    rounds = np.arange(12)
    ref = np.full(12, 1.0) * (1 + 0.01 * np.sin(rounds))
    other = 1.5 * ref * np.where(rounds < 6, 1.0, 1.2)
    rows = [{"run_id": "r", "cell_id": f"{b}", "round": i, "value": v, "model": "mlp", "backend": b,
             "phase": "infer", "batch_size": 32, "process": int(i >= 6)}
            for b, vals in (("cpu-fp32", ref), ("onnxruntime-cpu", other)) for i, v in zip(rounds, vals)]
    two = pd.DataFrame(rows)
    one = two.assign(process=0)
    a, b = (rank_backends(v).set_index("backend").loc["onnxruntime-cpu"] for v in (one, two))
    assert a.interval_from == "rounds" and b.interval_from == "rounds+processes"
    assert a.time_vs_baseline == b.time_vs_baseline
    assert b.time_vs_baseline_high / b.time_vs_baseline_low > 1.3 > a.time_vs_baseline_high / a.time_vs_baseline_low


def test_calibrated_interval_covers_the_run_to_run_variation():
    """Single-process runs whose level moves by 6% (log sd) from run to run: the calibrated interval
    (sigma 0.06) covers the true ratio at about the nominal rate; the in-run interval does not."""
    rng = np.random.default_rng(17)
    trials, calibrated, inside = 300, 0, 0
    for _ in range(trials):
        b = rng.lognormal(0, 0.06) * rng.lognormal(0, 0.01, 12)
        o = 1.1 * rng.lognormal(0, 0.06) * rng.lognormal(0, 0.01, 12)
        u = unpaired_ratio(b, o)
        c = widened(u, sigma=0.06, df=30, scale=np.sqrt(2))
        calibrated += c["ratio_low"] <= 1.1 <= c["ratio_high"]
        inside += u["ratio_low"] <= 1.1 <= u["ratio_high"]
    assert calibrated / trials >= 0.92 and inside / trials < 0.5


def test_relative_ratio_needs_no_calibration_and_finds_a_backend_that_lost_ground():
    """Two runs whose machine speed differs by 30% (shared by every backend of a run): the quotient
    of each run's paired ratio (``quotient``) of identical twins covers 1 at about the nominal rate,
    and a backend 10% slower in run B only is found, with one run a side."""
    rng = np.random.default_rng(11)

    def run(speed: float, slowdown: float, rounds: int = 15):
        drift = rng.normal(0, 0.05, rounds)
        ref = {r: speed * np.exp(drift[r] + rng.normal(0, 0.02)) for r in range(rounds)}
        other = {r: 0.5 * speed * slowdown * np.exp(drift[r] + rng.normal(0, 0.02)) for r in range(rounds)}
        return time_ratio(ref, other)

    trials = 200
    covered = found = 0
    for _ in range(trials):
        aa = quotient(run(1.0, 1.0), run(1.3, 1.0))
        covered += aa["ratio_low"] <= 1 <= aa["ratio_high"]
        slow = quotient(run(1.0, 1.0), run(1.3, 1.10))
        found += slow["ratio_low"] > 1
    assert covered / trials >= 0.90
    assert found / trials >= 0.90
    one_round = quotient(time_ratio({0: 1.0}, {0: 2.0}), time_ratio({0: 1.0}, {0: 2.0}))
    assert one_round["ratio"] == pytest.approx(1.0) and np.isnan(one_round["ratio_low"])


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
        rounds, warmup_calls, budget_s, min_repeats, max_repeats, resolution_pct, max_time_s = 4, 1, 0.004, 8, 40, 0, 0

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


def test_added_rounds_go_to_the_pair_still_wider_than_the_resolution(monkeypatch):
    """Synthetic call times (no clock): 'ref' steady, 'far' 3x slower and steady, 'twin' 2% slower
    and noisy (5%). After the first rounds only the twin's pair with the reference is wider than
    +-1%, so the added rounds go to those two, until the interval is within +-1%."""
    import bench.measure.rounds as rounds_module

    rng = np.random.default_rng(1)

    def sampler(level, noise):
        return lambda: level * rng.lognormal(0, noise)

    monkeypatch.setattr(rounds_module, "time_calls", lambda fn, clock, n: ([fn() for _ in range(n)],) * 2)

    class Cfg:
        rounds, warmup_calls, budget_s, min_repeats, max_repeats, resolution_pct, max_time_s = 6, 0, 0.06, 6, 6, 1, 5

    ref, twin, far = (Contender("ref", sampler(1e-3, 0.001), "cpu"), Contender("twin", sampler(1.02e-3, 0.05), "cpu"),
                      Contender("far", sampler(3e-3, 0.001), "cpu"))
    measure_rounds([ref, twin, far], 1, Cfg(), reference="ref")
    assert len(far.values) == 6 and len(twin.values) > 6 and set(twin.values) == set(ref.values)
    r = time_ratio(ref.values, twin.values)
    assert resolution(r["ratio_low"], r["ratio_high"]) <= 0.01 and r["ratio_low"] <= 1.02 <= r["ratio_high"]


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
    summary = pd.DataFrame([{"model": "mlp", "backend": "cpu-fp32", "phase": "infer", "batch_size": 32,
                             "status": "ok"}])
    write_cell(tmp_path, "mlp__cpu-fp32__infer_bs32", {"summary": summary, "timings": timings})
    back = read_run(tmp_path)["timings"].drop(columns=["run_id", "cell_id"])
    pd.testing.assert_frame_equal(back, timings)


# -- compare on real runs --------------------------------------------------------------------------

def _values(mnist_path, out, backends):
    args = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY[::2]], TINY[1::2]))
    return {**args, "models": "mlp", "backends": backends, "data_dir": str(mnist_path), "out": str(out),
            "batch_sizes": "1,32", "rounds": 8, "budget_s": 0.12, "max_time_s": 1}


def _run(values: dict, out: Path) -> Path:
    from bench.config.build import build_config
    from bench.scheduling.runner import Runner

    return Runner(build_config({**values, "out": str(out)}), progress=False).run()


def _slowed_copy(run_dir: Path, out: Path, backend: str, factor: float) -> Path:
    """A copy of a run under another id in which every timed call of ``backend`` took ``factor``
    times as long: a regression by construction, whatever the machine did."""
    copy = Path(shutil.copytree(run_dir, out))
    meta = json.loads((copy / "meta.json").read_text())
    write_json(copy / "meta.json", {**meta, "run_id": out.name})
    for cell in (copy / "cells").iterdir():
        summary, timings = cell / "summary.parquet", cell / "timings.parquet"
        if summary.is_file() and timings.is_file() and (pd.read_parquet(summary).backend == backend).all():
            t = pd.read_parquet(timings)
            t.assign(seconds=t.seconds * factor).to_parquet(timings, index=False)
    return copy


@pytest.fixture(scope="module")
def two_runs(mnist_path, tmp_path_factory):
    """The same small configuration twice, back to back (A/A)."""
    out = tmp_path_factory.mktemp("aa")
    values = _values(mnist_path, out, "cpu-fp32,onnxruntime-cpu")
    return _run(values, out / "a"), _run(values, out / "b")


@pytest.mark.slow
def test_compare_of_uncalibrated_runs_says_it_cannot_tell(two_runs, tmp_path, capsys):
    """Two identical runs of an uncalibrated machine: every cell is unjudged ("cannot tell"), never a
    verdict; the page renders."""
    first, second = two_runs
    assert main(["compare", str(first), str(second), "--output", str(tmp_path / "c.html"),
                 "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verdict [95% CI]" in out and "geometric-mean speedup" in out and "unjudged" in out
    html = (tmp_path / "c.html").read_text()
    assert "compare-table" in html and "data:image/svg+xml;base64," in html and "Environment differences" in html
    from bench.analysis.comparison import compare

    m = compare([first, second], calibration_files=[]).matched
    assert len(m) == 5  # train + 2 batch sizes x (cpu-fp32) + 2 x (onnxruntime-cpu)
    assert (m.interval_from == "none").all() and not m.significant.any() and not m.judged.any()
    assert m.verdict.str.startswith("cannot tell across runs").all() and (m.time_ratio > 0).all()
    # what one run a side can back: each backend against the reference of its own run
    rel = compare([first, second], calibration_files=[]).relative
    assert len(rel) == 2 and (rel.backend == "onnxruntime-cpu").all() and (rel.reference == "cpu-fp32").all()
    assert (rel.relative_ratio_low <= rel.relative_ratio).all()
    assert (rel.relative_ratio <= rel.relative_ratio_high).all()
    assert "relative to cpu-fp32 in the same run" in out and "relative-table" in html
    # without --output the page is named after the runs it compares, so another comparison keeps it
    assert main(["compare", str(first), str(second), "--results", str(tmp_path)]) == 0
    assert (first.parent / f"compare-{first.name}-vs-{second.name}.html").is_file()
    assert main(["compare", str(second), str(first), "--results", str(tmp_path)]) == 0
    assert (second.parent / f"compare-{second.name}-vs-{first.name}.html").is_file()


def _calibrate_from(runs, folder):
    """A calibration made from runs of one configuration (as 'mnist-bench calibrate' stores it)."""
    from bench.analysis.calibration import run_to_run_sigma
    from bench.analysis.ranked import cell_rounds
    from bench.storage.calibration import save
    from bench.storage.results import read_run

    tables = [read_run(r) for r in runs]
    sigma = run_to_run_sigma(pd.concat([cell_rounds(t) for t in tables], ignore_index=True))
    return save(folder, next(iter(tables[0].meta.values())), sigma, [Path(r).name for r in runs])


@pytest.mark.slow
def test_fail_above_exits_3_on_a_significant_slowdown_and_on_unjudged_cells(two_runs, tmp_path, capsys):
    """The gate on inputs constructed to regress (load-proof): a copy of a run whose onnxruntime-cpu
    calls each took 3x as long, and a calibration that states a 2% run-to-run spread."""
    from bench.storage.calibration import save

    first = two_runs[0]
    regressed = _slowed_copy(first, tmp_path / "regressed", "onnxruntime-cpu", 3.0)
    args = ["compare", str(first), str(regressed), "--results", str(tmp_path)]
    # uncalibrated single-process runs: unjudged cells fail the gate unless allowed
    assert main([*args, "--fail-above", "1e9", "--output", str(tmp_path / "c0.html")]) == 3
    assert "unjudged: " in capsys.readouterr().err
    assert main([*args, "--fail-above", "1e9", "--allow-unjudged", "--output", str(tmp_path / "c1.html")]) == 0
    capsys.readouterr()
    spread = {phase: {"sigma": 0.02, "df": 30, "cells": 3, "runs": 2} for phase in ("train", "infer")}
    meta = next(iter(read_run(first).meta.values()))
    calibration = save(tmp_path / "cal", meta, spread, [first.name, first.name])
    args += ["--calibration", str(calibration)]
    rc = main([*args, "--fail-above", "0", "--output", str(tmp_path / "c2.html")])
    err = capsys.readouterr().err
    assert rc == 3 and "regression:" in err and "onnxruntime-cpu" in err
    assert "cpu-fp32 " not in err.split("regression:", 1)[1]  # the unchanged backend is no regression
    # a threshold above the slowdown passes
    assert main([*args, "--fail-above", "250", "--output", str(tmp_path / "c3.html")]) == 0
    assert main([*args[:-1], str(tmp_path / "none.json"), "--output", str(tmp_path / "c4.html")]) == 2


@pytest.mark.slow
def test_calibrated_compare_of_identical_runs_makes_no_claim_beyond_the_variation(two_runs, tmp_path):
    from bench.analysis.comparison import compare

    calibration = _calibrate_from(two_runs, tmp_path)
    m = compare(list(two_runs), calibration_files=[calibration]).matched
    assert (m.interval_from == "calibration").all() and m.judged.all()
    # sigma was learned from these two runs: no cell of the same pair can lie outside its interval
    assert not m.significant.any(), m[["backend", "phase", "batch_size", "time_ratio", "time_ratio_low",
                                       "time_ratio_high"]]
    normalized = compare(list(two_runs), normalize=True, calibration_files=[calibration]).matched
    assert not normalized.significant.any()  # --normalize never claims what the plain comparison does not


@pytest.mark.slow
def test_compare_bad_input_exit_2(two_runs, tmp_path, capsys):
    assert main(["compare", str(two_runs[0])]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main(["compare", *map(str, two_runs), "--baseline", "nope"]) == 2
    assert "legal values" in capsys.readouterr().err
    assert main(["compare", *map(str, two_runs), "--fail-above", "-5"]) == 2


@pytest.mark.slow
def test_twins_and_a_twice_slower_backend_inside_a_run(mnist_path, tmp_path):
    """What holds on a loaded machine (power and A/A rates: benchmarks/statistics_check.py), in one
    run: an identical twin is never called different by more than its own resolution, and a backend
    twice as slow is never called faster."""
    from bench.analysis.paired import rank_backends
    from bench.analysis.ranked import cell_rounds
    from bench.engines.backends import REFERENCE
    from bench.engines.control import registered

    with registered(slowdown=2.0):  # in this process only: their rounds run here (processes 1)
        run_dir = _run({**_values(mnist_path, tmp_path, "cpu-fp32,cpu-fp32-twin,cpu-fp32-slowed"), "processes": 1},
                       tmp_path / "controls")
    ranked = rank_backends(cell_rounds(read_run(run_dir)), baseline=REFERENCE)
    twin = ranked[ranked.backend == "cpu-fp32-twin"]
    assert len(twin) == 3  # training and two batch sizes
    res = [max(resolution(lo, hi), 0.05) for lo, hi in zip(twin.time_vs_baseline_low, twin.time_vs_baseline_high)]
    gap = np.maximum(twin.time_vs_baseline_low - 1, 1 / twin.time_vs_baseline_high - 1).clip(lower=0)
    assert (gap <= np.array(res)).all(), twin
    slowed = ranked[(ranked.backend == "cpu-fp32-slowed") & (ranked.phase == "infer")]
    assert len(slowed) == 2 and not (slowed.time_vs_baseline_high < 1).any()  # never called faster


def test_interleaved_training_gives_the_same_weights_as_training_alone(mnist_path):
    """Dropout draws from each run's own random stream, whatever trains between its blocks."""
    import torch

    from bench.config.build import TrainConfig
    from bench.data.mnist import make_split, resolve_mnist
    from bench.dynamics.recording import flat_params
    from bench.engines import BackendOptions
    from bench.engines.backends import get_backend
    from bench.training.train import TrainJob, train_blocks, train_model

    m = resolve_mnist(mnist_path)
    train = make_split(m.train_images, m.train_labels, "minmax", "cpu", 640)
    test = make_split(m.test_images, m.test_labels, "minmax", "cpu", 200)
    cfg, b, opts = TrainConfig(epochs=1, batch_size=32, evals_per_epoch=1, warmup_steps=2), get_backend("cpu-fp32"), \
        BackendOptions()
    alone = train_model(TrainJob("mlp", b, train, test, cfg, 3, opts)).model
    runs = {"mlp": train_blocks(TrainJob("mlp", b, train, test, cfg, 3, opts), block_steps=4),
            "cnn": train_blocks(TrainJob("cnn", b, train, test, cfg, 5, opts), block_steps=3)}
    together = interleave(runs)
    blocks = together["mlp"].blocks  # one row per steady step (20 steps less 2 of warm-up), in blocks of 4
    assert len(blocks) == 18 and blocks.groupby("round").size().tolist() == [4, 4, 4, 4, 2]
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
    assert "page-faulted" not in words
    faulting = calm.assign(minor_faults=[30000.0, 40000.0, 30000.0])  # ~117 MiB of 4 KiB pages a round
    words = " ".join(warnings_for(faulting, cpu_count=2))
    assert "the run itself page-faulted" in words and "--allocator" in words and "steal" not in words
    crowded = calm.assign(other_cores=[1.0, 0.9, 1.0])  # another process on one of the two cores
    assert "--threads 1 gives each thread a core" in " ".join(warnings_for(crowded, cpu_count=2, threads=2))
    assert warnings_for(crowded, cpu_count=2, threads=1) == []  # each thread had a core
    assert warnings_for(calm.assign(other_cores=0.1), cpu_count=2, threads=2) == []
    machine = Machine()
    row = machine.round("mlp infer bs1", 0)
    assert row["control_min_ms"] <= row["control_ms"] and row["group"] == "mlp infer bs1"
    machine.close()
    assert row["other_cores"] >= 0


@pytest.mark.parametrize("total, warmup, blocks", [(93, 10, 20), (15, 10, 5), (6, 10, 5), (3, 10, 2), (2000, 10, 20)])
def test_every_training_run_with_the_steps_has_at_least_five_timed_blocks(total, warmup, blocks):
    from bench.training.train import block_steps_for, warmup_steps_for

    taken = warmup_steps_for(total, warmup)
    steady = total - taken
    assert taken <= warmup and steady >= min(5, total - 1)
    per_block = block_steps_for(total, taken)
    assert -(-steady // per_block) >= blocks  # ceil: the last block may be short


def test_run_to_run_sigma_pools_the_cells_of_repeated_runs():
    from bench.analysis.calibration import run_to_run_sigma

    rng = np.random.default_rng(2)
    rows = []
    for run in range(4):
        for bs in (1, 32, 256):
            level = np.exp(rng.normal(0, 0.05))  # this run's level for this cell: 5% run to run
            rows += [{"run_id": f"r{run}", "model": "mlp", "backend": "cpu-fp32", "phase": "infer",
                      "batch_size": bs, "round": k, "value": level * 1e-4 * bs} for k in range(8)]
    sigma = run_to_run_sigma(pd.DataFrame(rows))["infer"]
    assert sigma["df"] == 9 and sigma["cells"] == 3 and 0.02 < sigma["sigma"] < 0.09


def test_relative_comparisons_widen_by_the_calibrated_variation_of_ratios():
    """The calibration holds how far a backend's ratio to the reference moves between runs
    (relative-infer), apart from the figures' own variation; compare_relative widens by it, so an
    A/A pair whose process moved one ratio by 6% is no longer called different (synthetic rounds)."""
    from bench.analysis.calibration import run_to_run_sigma
    from bench.analysis.paired import compare_relative

    rng = np.random.default_rng(3)

    def rounds(run, shift, ratio_move):
        rows = []
        for backend, base in (("cpu-fp32", 1e-3), ("onnxruntime-cpu", 5e-4)):
            move = ratio_move if backend != "cpu-fp32" else 1.0
            rows += [{"run_id": run, "model": "mlp", "backend": backend, "phase": "infer", "batch_size": 1,
                      "round": k, "value": base * shift * move * np.exp(rng.normal(0, 0.005))} for k in range(20)]
        return rows

    calib = pd.DataFrame(sum((rounds(f"c{i}", s, m) for i, (s, m) in enumerate(
        [(1.0, 1.0), (1.2, 1.05), (0.9, 0.96), (1.1, 1.02)])), []))
    sigma = run_to_run_sigma(calib)
    assert sigma["infer"]["sigma"] > 0.05 and 0.02 < sigma["relative-infer"]["sigma"] < 0.06
    values = pd.DataFrame(rounds("a", 1.0, 1.0) + rounds("b", 1.3, 1.06))  # the machine 30% slower, the ratio 6%
    plain = compare_relative(values, "a").iloc[0]
    assert plain.interval_from == "rounds" and plain.significant  # rounds alone: called different
    calibrated = compare_relative(values, "a", calibration={"a": sigma, "b": sigma}).iloc[0]
    assert calibrated.interval_from == "rounds+calibration" and not calibrated.significant
    assert calibrated.relative_ratio == pytest.approx(plain.relative_ratio)
    assert calibrated.relative_ratio_low < plain.relative_ratio_low < plain.relative_ratio_high \
        < calibrated.relative_ratio_high


def test_relative_comparisons_of_two_process_runs_widen_by_what_their_processes_showed():
    """Runs of 2 processes whose ratios move by 6% between processes (3 backends a run): an A/A
    pair the rounds alone call different is not called different once each run's processes widen
    it; a backend 30% slower in run B is still found in most pairs (synthetic rounds)."""
    from bench.analysis.paired import compare_relative

    rng = np.random.default_rng(4)

    def rounds(run, slow):
        rows = []
        for p in (0, 1):
            moves = {"cpu-fp32": 1.0, **{b: np.exp(rng.normal(0, 0.06)) for b in ("a", "b", "c")}}
            for backend, move in moves.items():
                factor = 1.3 if backend == "c" and slow else 1.0
                rows += [{"run_id": run, "model": "mlp", "backend": backend, "phase": "infer", "batch_size": 1,
                          "process": p, "round": 10 * p + k, "value": 1e-3 * move * factor * np.exp(
                              rng.normal(0, 0.005))} for k in range(10)]
        return rows

    widened_claims, plain_claims, found = 0, 0, 0
    for _ in range(20):
        values = pd.DataFrame(rounds("a", False) + rounds("b", True))
        r = compare_relative(values, "a").set_index("backend")
        assert (r.interval_from == "rounds+processes").all()
        plain = compare_relative(values.assign(process=0), "a").set_index("backend")
        assert (plain.interval_from == "rounds").all()
        widened_claims += int(r.loc[["a", "b"]].significant.sum())
        plain_claims += int(plain.loc[["a", "b"]].significant.sum())
        found += bool(r.loc["c"].relative_ratio_low > 1)
    assert widened_claims <= 2 and plain_claims >= 8 and found >= 12, (widened_claims, plain_claims, found)


def test_calibrate_refuses_fewer_than_two_repeats(tmp_path, capsys):
    assert main(["calibrate", "--repeats", "1", "--out", str(tmp_path)]) == 2
    assert "--repeats >= 2" in capsys.readouterr().err and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_worker_processes_number_their_rounds_apart(mnist_path, tmp_path):
    """--processes 2 with rounds added for resolution: every round of a cell belongs to one process,
    so rounds pair within a process and the processes are told apart across runs."""
    values = {**_values(mnist_path, tmp_path, "cpu-fp32,onnxruntime-cpu"), "batch_sizes": "1", "processes": 2,
              "resolution_pct": 0.1, "max_time_s": 1}
    t = read_run(_run(values, tmp_path / "procs"))["timings"]
    infer = t[t.cell_id.str.contains("infer")]
    assert (infer.groupby(["cell_id", "round"]).process.nunique() == 1).all()
    assert (infer.groupby("cell_id").process.nunique() == 2).all()
    assert infer.groupby(["cell_id", "process"])["round"].nunique().min() > 4  # rounds beyond a 4-round share


def test_normalize_never_claims_what_the_plain_comparison_does_not():
    """``compare --normalize`` keeps the union of both intervals; a cell the plain comparison cannot
    judge stays unjudged with the plain words, whatever the normalized one says."""
    from bench.analysis.paired import conservative

    def matched(lows, highs, judged, verdict):
        return pd.DataFrame({"run_id": "b", "model": "mlp", "backend": ["x", "y"], "phase": "infer",
                             "batch_size": [1, 32], "time_ratio": [1.2, 1.2], "time_ratio_low": lows,
                             "time_ratio_high": highs, "judged": judged, "significant": [True, True],
                             "resolution": [0.1, 0.1], "verdict": verdict})

    plain = matched([0.95, np.nan], [1.5, np.nan], [True, False], ["plain x", "cannot tell"])
    normalized = matched([1.1, 1.1], [1.3, 1.3], [True, True], ["normalized x", "normalized y"])
    out = conservative(plain, normalized).set_index("backend")
    assert (out.loc["x", "time_ratio_low"], out.loc["x", "time_ratio_high"]) == (0.95, 1.5)
    assert not out.loc["x", "significant"] and out.loc["x", "verdict"].startswith("tie with the baseline run")
    y = out.loc["y"]
    assert not y.judged and np.isnan(y.resolution) and y.verdict == "cannot tell"
    assert out.significant.dtype == bool
