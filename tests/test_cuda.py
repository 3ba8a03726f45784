"""CUDA checks: run on a GPU machine (`pytest -m cuda`), skipped cleanly elsewhere."""

import pytest
import torch

from bench.config.build import build_config
from bench.measure.clocks import CudaClock, clock_for, time_calls
from bench.scheduling.runner import Runner
from bench.storage.results import read_run

from .conftest import TINY

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")]


def test_cuda_clock_waits_for_queued_work():
    """A kernel that spins ~50 ms returns to the host at once; the clock must still see 50 ms."""
    clock = clock_for("cuda")
    assert isinstance(clock, CudaClock)
    torch.cuda._sleep(1000)  # first launch: context and module loading, not measured
    torch.cuda.synchronize()
    device_s, wall_s = time_calls(lambda: torch.cuda._sleep(10**8), clock, 3)  # 10^8 cycles: ~50 ms at 2 GHz
    assert min(device_s) > 0.01, device_s  # an unsynchronized clock would read microseconds
    assert all(w >= 0.9 * d for d, w in zip(device_s, wall_s))


@pytest.mark.slow
def test_cuda_backends_end_to_end(mnist_path, tmp_path):
    args = dict(zip([a.lstrip("-").replace("-", "_") for a in TINY[::2]], TINY[1::2]))
    cfg = build_config({**args, "models": "mlp,cnn", "backends": "cuda-fp32,cuda-amp-fp16,cuda-amp-bf16",
                        "data_dir": str(mnist_path), "out": str(tmp_path), "cudnn_benchmark": True})
    s = read_run(Runner(cfg, progress=False).run())["summary"]
    assert (s.status == "ok").all(), s[s.status != "ok"][["backend", "phase", "reason"]]
    assert (s.cuda_max_allocated_bytes > 0).all()
    assert (s.cuda_max_reserved_bytes >= s.cuda_max_allocated_bytes).all()
    train = s[s.phase == "train"]
    assert (train.device == "cuda").all() and (train.cudnn_benchmark == True).all()  # noqa: E712
    amp = train[train.precision != "fp32"]
    assert (amp.parity_argmax_agreement > 0.98).all()
    infer = s[s.phase == "infer"]
    assert infer.event_wall_gap.notna().all()


@pytest.mark.parametrize("backend", ["cuda-fp32", "cuda-amp-fp16"])
def test_a_cuda_call_and_step_are_broken_down_by_kernel_time(backend):
    """The breakdown reads the kernels' device time on CUDA, for a call and for a training step (each
    phase between two events), and its categories still sum to the call."""
    from bench.engines.backends import get_backend
    from bench.engines.base import BackendOptions
    from bench.measure.breakdown import breakdown, category_of, torch_operators
    from bench.training.breakdown import step_breakdown
    from bench.training.train import make_train_step

    b = get_backend(backend)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).cuda()
    prepared = b.engine.prepare(model.eval(), b, BackendOptions(), torch.zeros(8, 1, 28, 28, device="cuda"))
    x = prepared.to_input(torch.rand(64, 1, 28, 28, device="cuda"))
    table = breakdown(prepared, x, timed_s=1e-4)
    cats = table[table.kind == "category"]
    assert cats.seconds_per_call.sum() == pytest.approx(cats.wall_s_per_call.iloc[0], rel=1e-9)
    recorded, _ = torch_operators(lambda: prepared.predict(x), 3, "cuda")  # kernels' device time per operator
    assert any(category_of(name) == "matmul & conv" and seconds > 0 for name, (seconds, _) in recorded.items())
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = make_train_step(model, b, opt, scaler=b.grad_scaler())
    x, y = torch.rand(64, 1, 28, 28, device="cuda"), torch.arange(64, device="cuda") % 10
    steps = step_breakdown(step, model, iter(lambda: (x, y), None), "cuda", timed_s=1e-3)
    phases = steps[steps.kind == "phase"].set_index("name").seconds_per_call
    assert (phases[["forward", "backward", "optimizer"]] > 0).all()
