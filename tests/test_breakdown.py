"""Where the time goes: operators grouped into categories that sum to the profiled call, from
torch.profiler and from ONNX Runtime's own profiler, and a verdict's gap explained from them (or
said not to be explained). Structure only: no assertion reads a real timing's size."""

import pandas as pd
import pytest
import torch

from bench.analysis.breakdown import why
from bench.engines.backends import get_backend
from bench.engines.base import BackendOptions
from bench.measure.breakdown import CATEGORIES, OVERHEAD, attributed, breakdown, category_of, torch_operators


@pytest.mark.parametrize("op, category", [
    ("aten::addmm", "matmul & conv"), ("aten::mkldnn_convolution", "matmul & conv"), ("Gemm", "matmul & conv"),
    ("QLinearConv", "matmul & conv"), ("aten::relu", "elementwise & activation"),
    ("MaxPool", "elementwise & activation"),
    ("aten::_to_copy", "casts & layout"), ("aten::copy_", "casts & layout"), ("DequantizeLinear", "casts & layout"),
    ("Reshape", "casts & layout"), ("aten::empty", "memory"), ("Torch-Compiled Region: 0/2", OVERHEAD),
    ("TorchDynamo Cache Lookup", OVERHEAD), ("## Call CompiledFxGraph fx5e ##", "elementwise & activation"),
    ("Optimizer.step#Adam.step", OVERHEAD), ("AddmmBackward0", OVERHEAD), ("aten::sqrt", "elementwise & activation"),
    ("aten::_foreach_lerp_", "elementwise & activation"), ("aten::bernoulli_", "elementwise & activation"),
    ("SomethingNew", "other operators")])
def test_operators_fall_into_named_categories(op, category):
    assert category_of(op) == category


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10)).eval()


def _checked(table: pd.DataFrame) -> pd.DataFrame:
    cats = table[table.kind == "category"]
    assert list(cats.name) == list(CATEGORIES)
    assert cats.seconds_per_call.sum() == pytest.approx(cats.wall_s_per_call.iloc[0], rel=1e-9)
    assert (cats.seconds_per_call >= 0).all() and (table.calls >= 5).all()
    assert (table[table.kind == "operator"].seconds_per_call > 0).all()
    return cats


@pytest.mark.parametrize("backend", ["cpu-fp32", "cpu-bf16"])
def test_a_pytorch_call_is_broken_down_by_torch_profiler(backend):
    b = get_backend(backend)
    prepared = b.engine.prepare(_model(), b, BackendOptions(), torch.zeros(8, 1, 28, 28))
    x = prepared.to_input(torch.rand(4, 1, 28, 28))
    _checked(breakdown(prepared, x, timed_s=1e-4))
    # what the profiler recorded, by category (the seconds left after its own cost is taken off
    # depend on the machine's load: a small operator can come out at zero on a busy machine)
    recorded, _ = torch_operators(lambda: prepared.predict(x), 3, "cpu")
    kinds = {category_of(name) for name, (_, n) in recorded.items() if n > 0}
    assert "matmul & conv" in kinds
    if backend == "cpu-bf16":  # autocast casts the weights and the input on every call
        assert "casts & layout" in kinds


@pytest.mark.onnx
def test_an_onnxruntime_call_is_broken_down_by_its_own_profiler():
    pytest.importorskip("onnxruntime")
    b = get_backend("onnxruntime-cpu")
    prepared = b.engine.prepare(_model(), b, BackendOptions(), torch.zeros(8, 1, 28, 28))
    x = prepared.to_input(torch.rand(4, 1, 28, 28))
    _checked(breakdown(prepared, x, timed_s=1e-4))
    recorded, _ = prepared.operators(x, 3)  # ONNX Runtime's node types, not torch's operators
    assert set(recorded) & {"Gemm", "FusedGemm", "MatMul"}
    assert "matmul & conv" in {category_of(name) for name in recorded}


@pytest.mark.parametrize("backend", ["cpu-fp32", "cpu-bf16"])
def test_a_training_step_is_broken_down_by_phase_and_the_trained_state_is_put_back(backend):
    from bench.measure.breakdown import STEP_PHASES as PHASES
    from bench.training.breakdown import step_breakdown
    from bench.training.train import make_train_step

    b = get_backend(backend)
    model = _model().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=2)  # refuses a third step
    step = make_train_step(model, b, opt, sched)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    step(x, y)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = opt.state_dict()["state"][0]["exp_avg"].clone()
    rng = torch.get_rng_state()
    table = step_breakdown(step, model, iter(lambda: (x, y), None), "cpu", timed_s=1e-3)
    _checked(table)
    phases = table[table.kind == "phase"]
    assert list(phases.name) == list(PHASES) and (phases.seconds_per_call >= 0).all()
    assert (phases.set_index("name").seconds_per_call[["forward", "backward", "optimizer"]] > 0).all()
    assert (table.compiled_regions_per_call == 0).all() and (table.graphs_compiled_in_pass == 0).all()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # the trained model is back
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], moments)
    assert torch.equal(torch.get_rng_state(), rng)
    step(x, y)  # the schedule was not stepped by the pass: its one step left still runs


def test_the_framework_s_own_records_are_counted_once_within_the_overhead():
    from bench.measure.breakdown import category_rows

    ops = {"Torch-Compiled Region: 0/0": 10e-6, "aten::addmm": 20e-6, "aten::relu": 5e-6}
    rows, total = category_rows(ops, wall=50e-6, common={})
    cats = {r["name"]: r["seconds_per_call"] for r in rows if r["kind"] == "category"}
    assert total == 50e-6 and sum(cats.values()) == pytest.approx(50e-6)
    assert cats[OVERHEAD] == pytest.approx(25e-6)  # the call less its operators; the region's record lies within


def _cells(seconds: dict[str, float], timed: float | None = None) -> pd.DataFrame:
    """A cell's category rows; ``timed``: its process's timed median call (default: the pass's call)."""
    total = sum(seconds.values())
    return pd.DataFrame([{"kind": "category", "name": c, "seconds_per_call": seconds.get(c, 0.0),
                          "wall_s_per_call": total, "timed_s_per_call": timed or total} for c in CATEGORIES])


def _step(phases: dict[str, float], categories: dict[str, float], regions: float = 0.0) -> pd.DataFrame:
    total = sum(phases.values())
    rows = _cells(categories).assign(wall_s_per_call=total, timed_s_per_call=total)
    steps = pd.DataFrame([{"kind": "phase", "name": p, "seconds_per_call": s, "wall_s_per_call": total,
                           "timed_s_per_call": total} for p, s in phases.items()])
    return pd.concat([rows, steps]).assign(compiled_regions_per_call=regions, graphs_compiled_in_pass=0)


def test_the_profiler_s_cost_comes_off_and_operators_never_outlast_the_plain_call():
    """Operators recorded at 2 ms a call under a profiled call of 3 ms, the plain call 2.5 ms: the
    cost (0.5 ms over 10 records) comes off each record. Profiled calls slowed beyond that cost (a
    matmul preempted to 3 ms of a 5 ms profiled call, the plain call 1 ms: the even cost takes the
    small records to nothing and leaves the matmul at 2.6 ms) keep their shares of the profiled
    call in the plain call's seconds."""
    ops, cost = attributed({"aten::addmm": (1.5e-3, 5.0), "aten::relu": (0.5e-3, 5.0)}, 3e-3, 2.5e-3)
    assert cost == pytest.approx(0.05e-3)
    assert ops == pytest.approx({"aten::addmm": 1.25e-3, "aten::relu": 0.25e-3})
    ops, _ = attributed({"aten::addmm": (3e-3, 1.0), "aten::relu": (0.1e-3, 9.0)}, 5e-3, 1e-3)
    assert ops == pytest.approx({"aten::addmm": 0.6e-3, "aten::relu": 0.02e-3})
    assert sum(ops.values()) <= 1e-3


def test_a_gap_is_explained_by_the_categories_that_make_it():
    base = _cells({"matmul & conv": 10e-6, OVERHEAD: 5e-6})
    other = _cells({"matmul & conv": 12e-6, "casts & layout": 41e-6, OVERHEAD: 10e-6})
    words = why(other, base, timed_ratio=63 / 15)
    assert words == "casts & layout +41 µs; framework overhead +5 µs: +48 µs per call in all"


def test_a_training_gap_is_explained_by_the_phases_of_the_step_then_by_kind():
    base = _step({"data": 0.1e-3, "forward": 6e-3, "backward": 6e-3, "optimizer": 1e-3},
                 {"matmul & conv": 6e-3, "elementwise & activation": 5e-3, OVERHEAD: 2.1e-3})
    other = _step({"data": 0.1e-3, "forward": 12e-3, "backward": 8.5e-3, "optimizer": 1e-3},
                  {"matmul & conv": 5.5e-3, "elementwise & activation": 14e-3, OVERHEAD: 2.1e-3}, regions=1.0)
    words = why(other, base, timed_ratio=21.6 / 13.1)
    assert words == ("forward +6 ms; backward +2.5 ms — by kind: elementwise & activation +9 ms: +8.5 ms per step "
                     "in all (compiled: one graph entered per step, no graph break; none recompiled in the pass)")


def test_a_breakdown_that_disagrees_with_the_timing_says_so_instead():
    """The pass is held against the rounds it explains (its process's timed calls): 2.00× in the
    pass against 5.00× in those rounds is not explained."""
    base = _cells({"matmul & conv": 10e-6}, timed=10e-6)
    other = _cells({"matmul & conv": 20e-6}, timed=50e-6)
    assert why(other, base, timed_ratio=5.0).startswith("not explained: in the breakdown's pass the ratio was 2.00×, "
                                                        "in the rounds it explains 5.00×")


def test_an_explanation_of_one_process_says_so_where_the_run_pooled_another_ratio():
    """The pass agrees with its process's rounds (2×), the verdict over both processes read 3×: the
    gap is explained, and the words say whose calls they describe."""
    base, other = _cells({"matmul & conv": 10e-6}), _cells({"matmul & conv": 20e-6})
    assert why(other, base, timed_ratio=3.0) == ("matmul & conv +10 µs: +10 µs per call in all (the calls of the "
                                                 "run's first process, where the ratio was 2.00×; over all 3.00×)")


def test_shadow_blocks_are_made_as_the_timed_blocks_and_kept_apart(monkeypatch):
    """A contender asked for shadow blocks gets one every SHADOW_EVERY rounds, of as many calls as
    its timed block, taking its turn in the round's balanced order as a member of its own (not
    always right after its timed block); its timed calls and figures are those of a contender
    without them."""
    from bench.measure import rounds as rounds_module
    from bench.measure.rounds import SHADOW_EVERY, Contender, measure_rounds

    monkeypatch.setattr(rounds_module, "time_calls", lambda fn, clock, n: ([fn() for _ in range(n)],) * 2)

    class Cfg:
        rounds, warmup_calls, budget_s, min_repeats, max_repeats, resolution_pct, max_time_s = 6, 1, 0.06, 12, 12, 0, 0

    plain, shadowed = Contender("a", lambda: 1e-3, "cpu"), Contender("b", lambda: 1e-3, "cpu", shadow=[])
    measure_rounds([plain, shadowed], 1, Cfg())
    shadow = pd.DataFrame(shadowed.shadow)
    assert sorted(shadow["round"].unique()) == [r for r in range(6) if r % SHADOW_EVERY == SHADOW_EVERY - 1]
    assert len(shadowed.rows) == len(plain.rows) and shadowed.values == plain.values
    timed = pd.DataFrame(shadowed.rows)
    for r, block in shadow.groupby("round"):  # as many calls, in a position of its own
        assert len(block) == (timed["round"] == r).sum()
        assert not set(block.position) & set(timed[timed["round"] == r].position)
    assert shadow.groupby("round").position.first().nunique() > 1  # not one fixed place in the round
    assert (shadow.page_faults_per_call >= 0).all()


def test_shadow_blocks_among_training_blocks_leave_the_training_as_it_was(mnist_path):
    """The same seeded training with and without the breakdown's shadow blocks ends with the same
    weights and losses: each block's steps are put back (weights, optimizer, random streams)."""
    from bench.config.build import build_config
    from bench.data.mnist import make_split, resolve_mnist
    from bench.training.train import TrainJob, train_blocks

    cfg = build_config({"limit_train": 512, "limit_test": 200, "epochs": 1, "batch_size": 32})
    m = resolve_mnist(str(mnist_path))
    t = cfg.train_for("mlp")
    train = make_split(m.train_images, m.train_labels, t.normalization, "cpu", t.limit_train)
    test = make_split(m.test_images, m.test_labels, t.normalization, "cpu", t.limit_test)

    def trained(breakdown: bool):
        blocks = train_blocks(TrainJob("mlp", get_backend("cpu-fp32"), train, test, t, 0, cfg.backend_options),
                              block_steps=2, breakdown=breakdown)
        while True:
            try:
                next(blocks)
            except StopIteration as done:
                return done.value

    plain, shadowed = trained(False), trained(True)
    assert plain.shadow is None and len(shadowed.shadow.blocks) >= 1
    assert all(torch.equal(v, plain.model.state_dict()[k]) for k, v in shadowed.model.state_dict().items())
    assert plain.blocks.loss.tolist() == shadowed.blocks.loss.tolist()


def test_the_pass_reads_its_plain_calls_against_the_timed_calls_of_the_same_rounds():
    """A busy machine makes whole rounds slow: the plain calls (shadow blocks, every other round) are
    held against the timed calls of the rounds they ran in, not against every round's calls."""
    from bench.measure.breakdown import Look

    slow = {0: 10.0, 1: 1.0, 2: 10.0, 3: 1.0, 4: 10.0}  # rounds 0, 2, 4 slow; the shadow blocks ran in 1 and 3
    timed = [{"round": r, "seconds": s * f} for r, s in slow.items() for f in (1.0, 1.0, 1.1)]
    shadow = [{"round": r, "seconds": slow[r] * f, "page_faults_per_call": 0.5} for r in (1, 3) for f in (1.0, 1.2)]
    look = Look.of_rounds(None, None, timed, shadow)
    assert look.timed_s == 1.0 and look.wall_s == 1.1 and look.blocks == 2 and look.faults == 0.5
    assert pd.DataFrame(timed).seconds.median() == 10.0  # every round's calls pooled: the slow rounds' call


def test_a_cell_whose_rounds_flip_between_speeds_says_so_where_it_is_not_explained():
    """The reference's rounds in the pass's process: every second one 20x slower (one core busy,
    as many threads as cores); the backend's steady. The pass cannot agree with such rounds, and
    the words name the flipping cell and how many of its rounds ran slow; steady rounds add nothing."""
    from bench.analysis.breakdown import explanations
    from bench.storage.results import RunTables

    def calls(cell, slow_every):
        return [{"run_id": "r", "cell_id": cell, "round": k, "process": 0, "samples": 1, "seconds": 1e-3 * (
                 20 if slow_every and k % slow_every == 0 else 1)} for k in range(10) for _ in range(3)]

    summary = pd.DataFrame([{"run_id": "r", "cell_id": c, "model": "cnn", "backend": b, "phase": "infer",
                             "batch_size": 1} for c, b in (("ref", "cpu-fp32"), ("bf16", "cpu-bf16"))])
    timings = pd.DataFrame(calls("ref", 2) + calls("bf16", 0))
    breakdown = pd.concat([_cells({"matmul & conv": 1e-3}, timed=1e-3).assign(cell_id="ref"),
                           _cells({"matmul & conv": 2e-3}, timed=5e-3).assign(cell_id="bf16")]).assign(run_id="r")
    rt = RunTables(meta={"r": {}}, tables={"summary": summary, "timings": timings, "time_breakdown": breakdown})
    ranked = pd.DataFrame([{"run_id": "r", "model": "cnn", "phase": "infer", "batch_size": 1, "backend": "cpu-bf16",
                            "time_vs_baseline": 5.0, "time_vs_baseline_low": 4.0, "time_vs_baseline_high": 6.0}])
    words = explanations(ranked, rt, "cpu-fp32").iloc[0]
    assert words.startswith("not explained") and words.endswith(
        "; cpu-fp32's rounds flip between speeds: 50% of them over 2× its fastest round)")
    assert "cpu-bf16's rounds" not in words
