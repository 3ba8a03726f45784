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
