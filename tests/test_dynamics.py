"""Optimization dynamics: recording and the landscape analyses."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.config.build import TrainConfig
from bench.data.mnist import make_split, resolve_mnist
from bench.dynamics.landscape import (
    LandscapeEvaluator,
    combine,
    filter_normalized_direction,
    params_of,
    pca_directions,
    top_hessian_eigenvalue,
    unflatten,
)
from bench.dynamics.recording import DynamicsRecorder, flat_params
from bench.engines import BackendOptions
from bench.engines.backends import get_backend
from bench.training.train import TrainJob, train_model
from models import build_model


@pytest.fixture(scope="module")
def data(mnist_path):
    m = resolve_mnist(mnist_path)
    return (make_split(m.train_images, m.train_labels, "minmax", "cpu", 512),
            make_split(m.test_images, m.test_labels, "minmax", "cpu", 300))


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def setup(request, data):
    torch.manual_seed(1)
    model = build_model(request.param).eval()
    train, _ = data
    x, y = train.x[:200], train.y[:200]
    c = params_of(model)
    g = torch.Generator().manual_seed(0)
    return model, x, y, c, filter_normalized_direction(c, g), filter_normalized_direction(c, g)


def _loss(model, params, x, y):
    with torch.no_grad():
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y).item()


def test_surface_center_is_the_model_loss(setup):
    model, x, y, c, d1, d2 = setup
    ev = LandscapeEvaluator(model, x, y)
    _, _, loss, _ = ev.surface(c, d1, d2, torch.tensor([-0.5, 0.0, 0.5]), torch.tensor([-0.5, 0.0, 0.5]))
    assert loss[1, 1].item() == pytest.approx(_loss(model, c, x, y), abs=1e-5)


def test_filter_normalized_norms(setup):
    _, _, _, c, d1, _ = setup
    for k, w in c.items():
        if w.dim() > 1:
            torch.testing.assert_close(d1[k].reshape(w.shape[0], -1).norm(dim=1), w.reshape(w.shape[0], -1).norm(dim=1))
        else:
            assert torch.count_nonzero(d1[k]) == 0  # biases ignored by default


@pytest.mark.parametrize("chunk", [1, 4])
def test_batched_matches_point_by_point(setup, chunk):
    model, x, y, c, d1, d2 = setup
    ev = LandscapeEvaluator(model, x, y, chunk=chunk)
    a = torch.tensor([-1.0, -0.3, 0.0, 0.4, 1.0])
    b = torch.tensor([0.5, -1.0, 0.0, 0.2, 1.0])
    loss, acc = ev.evaluate_plane(c, d1, d2, a, b)
    ref_loss, ref_acc = ev.evaluate_points([combine(c, [d1, d2], [ai, bi]) for ai, bi in zip(a.tolist(), b.tolist())])
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acc, ref_acc)


def test_points_in_the_cpu_s_form_match_point_by_point(setup):
    model, x, y, c, d1, d2 = setup
    ev = LandscapeEvaluator(model, x, y)
    points = [c, combine(c, [d1, d2], [0.4, -0.7])]
    loss, acc = ev.evaluate_at(points)
    ref_loss, ref_acc = ev.evaluate_points(points)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acc, ref_acc)


def test_pca_from_the_gram_matrix_is_the_svd_s():
    g = torch.Generator().manual_seed(1)
    ckpts = torch.randn(12, 400, generator=g).cumsum(0)
    v1, v2, ratio, coords = pca_directions(ckpts, ckpts[-1])
    _, s, vh = torch.linalg.svd((ckpts - ckpts[-1]).double(), full_matrices=False)
    torch.testing.assert_close(ratio, (s**2 / (s**2).sum())[:2].float())
    for v, ref in ((v1, vh[0]), (v2, vh[1])):  # the same direction, up to its sign
        assert abs(float(v.double() @ ref)) == pytest.approx(1.0, abs=1e-5)


def test_interpolation_endpoints(setup):
    model, x, y, c, d1, _ = setup
    final = combine(c, [d1], [0.3])
    ev = LandscapeEvaluator(model, x, y)
    delta = {k: final[k] - c[k] for k in c}
    loss, _ = ev.evaluate_plane(c, delta, None, torch.tensor([0.0, 1.0]), torch.zeros(2))
    assert loss[0].item() == pytest.approx(_loss(model, c, x, y), abs=1e-5)
    assert loss[1].item() == pytest.approx(_loss(model, final, x, y), abs=1e-5)


def test_pca_variance_ratios():
    g = torch.Generator().manual_seed(0)
    ckpts = torch.randn(8, 50, generator=g).cumsum(0)
    v1, v2, ratio, coords = pca_directions(ckpts, ckpts[-1])
    assert ((ratio >= 0) & (ratio <= 1)).all() and ratio.sum() <= 1 + 1e-6
    assert abs(float(v1 @ v2)) < 1e-5 and coords.shape == (8, 2)
    assert coords[-1].abs().max() < 1e-5  # the final checkpoint is the origin


def test_power_iteration_on_a_known_quadratic():
    """loss(w) = 0.5 * w^T A w has Hessian A: the top eigenvalue is known exactly."""
    A = torch.diag(torch.tensor([5.0, 2.0, 0.5, -1.0]))

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return self.w

    quadratic = lambda w, y: 0.5 * w @ A @ w
    est = top_hessian_eigenvalue(Linear(), params_of(Linear()), torch.zeros(1), torch.zeros(1), iters=40,
                                 criterion=quadratic)
    assert est[-1] == pytest.approx(5.0, rel=1e-4)
    assert abs(est[-1] - est[-2]) < abs(est[1] - est[0])  # converging


def test_recording_does_not_change_training(data):
    train, test = data
    cfg = TrainConfig(epochs=1, batch_size=64, evals_per_epoch=1, schedule="onecycle")
    b = get_backend("cpu-fp32")
    plain = train_model(TrainJob("mlp", b, train, test, cfg, 3, BackendOptions())).model
    rec = DynamicsRecorder(total_steps=8)
    recorded = train_model(TrainJob("mlp", b, train, test, cfg, 3, BackendOptions()), recorder=rec).model
    assert torch.equal(flat_params(plain), flat_params(recorded))
    tables = rec.tables()
    layers = tables["dynamics_layers"]
    assert set(layers.layer) == {"1:Linear", "4:Linear", "7:Linear"} and len(layers) == 8 * 3
    assert (layers.update_ratio > 0).all() and (layers.grad_norm > 0).all()
    assert len(tables["dynamics_steps"]) == 8 and rec.checkpoints[0][0] == 0 and rec.checkpoints[-1][0] == 8
    assert torch.equal(rec.checkpoints[-1][1], flat_params(recorded))
    assert torch.equal(unflatten(recorded, rec.checkpoints[-1][1])["1.weight"], recorded[1].weight.detach())
    sparse = DynamicsRecorder(total_steps=8, every=3)
    again = train_model(TrainJob("mlp", b, train, test, cfg, 3, BackendOptions()), recorder=sparse).model
    assert torch.equal(flat_params(again), flat_params(plain))
    assert sorted(set(sparse.tables()["dynamics_layers"].step)) == [0, 3, 6]


@pytest.mark.slow
def test_run_with_dynamics_writes_analyses(mnist_path, tmp_path):
    from bench.cli import main
    from bench.storage.results import read_run

    assert main(["run", "--models", "mlp", "--backends", "cpu-fp32", "--limit-train", "1024", "--limit-test", "300",
                 "--batch-sizes", "1", "--budget-s", "0.02", "--processes", "1", "--threads", "1", "--dynamics",
                 "--data-dir", str(mnist_path), "--out", str(tmp_path)]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rt = read_run(run_dir)
    land = rt["landscape"]
    assert set(land.analysis) >= {"interpolation", "surface", "pca_surface", "pca_path", "pca_variance",
                                  "perturbation", "sharpness"}
    assert land[land.analysis == "surface"].shape[0] == 15 * 15  # the default grid
    html = (run_dir / "report.html").read_text()
    assert "Optimization dynamics" in html and "dynamics-table" in html
    assert set(land.analysis) >= {"seed_connectivity"}  # the reference's line to the next seed
    # re-analysing from the files alone
    assert main(["dynamics", str(run_dir), "--grid", "5", "--subset", "100", "--data-dir", str(mnist_path),
                 "--no-report"]) == 0
    assert read_run(run_dir)["landscape"].query("analysis == 'surface'").shape[0] == 25


def test_the_barrier_of_a_line_with_a_hump_and_of_a_line_without():
    import pandas as pd

    from bench.analysis.basins import barrier, basin

    alphas = [i / 10 for i in range(11)]
    flat = pd.DataFrame({"x": alphas, "loss": [0.2 + 0.1 * a for a in alphas], "accuracy": [0.95] * 11})
    hump = pd.DataFrame({"x": alphas, "loss": [0.2 + 2.0 * a * (1 - a) for a in alphas],
                         "accuracy": [0.95 - 0.8 * a * (1 - a) for a in alphas]})
    assert barrier(flat) == pytest.approx((0.0, 0.0), abs=1e-9)
    loss_pct, acc_pts = barrier(hump)
    assert loss_pct == pytest.approx(0.5 / 0.2 * 100) and acc_pts == pytest.approx(20.0)
    assert basin(1.0, 40.0) == "same" and basin(30.0, 40.0) == "different" and basin(15.0, 40.0) == "cannot tell"
    assert basin(1.0, 0.5) == "cannot tell"  # two seeds connect too: the line cannot tell


def test_the_line_between_permuted_twins_has_a_barrier_and_a_nudged_copy_none(data):
    """A case built to have a barrier (the same network with its hidden units permuted: one function,
    two places) and one built to have none (the same weights nudged by 0.1%)."""
    from bench.analysis.basins import barrier
    from bench.config.types import DynamicsConfig
    from bench.dynamics.analyses import seed_connectivity

    train, test = data
    cfg = TrainConfig(epochs=2, batch_size=32, evals_per_epoch=1)
    net = train_model(TrainJob("mlp", get_backend("cpu-fp32"), train, test, cfg, 0, BackendOptions())).model
    final = flat_params(net)
    twin = {k: v.clone() for k, v in params_of(net).items()}
    perm = torch.randperm(twin["1.weight"].shape[0], generator=torch.Generator().manual_seed(0))
    twin["1.weight"], twin["1.bias"], twin["4.weight"] = twin["1.weight"][perm], twin["1.bias"][perm], \
        twin["4.weight"][:, perm]
    permuted = torch.cat([twin[k].reshape(-1) for k, _ in net.named_parameters()])
    dcfg = DynamicsConfig(subset=300)
    apart = barrier(seed_connectivity("mlp", final, permuted, train, dcfg))[0]
    nudged = barrier(seed_connectivity("mlp", final, final * 1.001, train, dcfg))[0]
    assert apart > 20 and nudged < 1


@pytest.mark.slow
def test_every_training_backend_is_analysed_against_the_reference(mnist_path, tmp_path, capsys):
    from bench.analysis.basins import basins
    from bench.cli import main
    from bench.storage.results import read_run

    assert main(["run", "--models", "mlp", "--backends", "cpu-fp32,cpu-bf16", "--limit-train", "1024",
                 "--limit-test", "300", "--batch-sizes", "1", "--budget-s", "0.02", "--processes", "1", "--threads",
                 "1", "--dynamics", "--grid", "3", "--subset", "200", "--data-dir", str(mnist_path), "--out",
                 str(tmp_path), "--export", "csv"]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rt = read_run(run_dir)
    land = rt.with_cells("landscape")
    assert set(land[land.backend == "cpu-bf16"].analysis) == {"connectivity", "pca_path", "perturbation", "sharpness"}
    paths = land[land.analysis == "pca_path"]  # both trajectories on the reference's plane, from one origin
    assert set(paths.backend) == {"cpu-fp32", "cpu-bf16"}
    first = paths[paths.step == 0].groupby("backend")[["x", "y"]].first()
    assert (first.loc["cpu-fp32"] - first.loc["cpu-bf16"]).abs().max() < 1e-3  # the same initial weights
    lost = rt.with_cells("dynamics_layers").query("backend == 'cpu-bf16'").updates_below_spacing
    assert lost.between(0, 1).all() and lost.notna().any()
    (row,) = basins(rt).itertuples()
    assert row.backend == "cpu-bf16" and row.reference_backend == "cpu-fp32" and row.barrier_loss_pct >= 0
    assert row.words.startswith("cpu-bf16 ") and "cpu-fp32" in row.words and "bf16's spacing" in row.words
    assert row.words in capsys.readouterr().out  # the terminal says it
    page = (run_dir / "report.html").read_text()
    assert "Across backends: the same minimum?" in page and row.backend in page
    exported = (run_dir / "export" / "optimization-dynamics.csv").read_text()
    assert "cpu-bf16" in exported and "barrier_loss_pct" in exported
