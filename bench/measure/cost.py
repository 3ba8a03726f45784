"""Model cost (parameters, FLOPs via torch's FLOP counter) and the machine's measured peak
matrix-multiply FLOP/s, the denominator of MFU."""

from __future__ import annotations

import copy
from functools import cache

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.measure.clocks import clock_for
from models import build_model, get_spec


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@cache
def model_cost(name: str) -> dict[str, float]:
    """Parameters and FLOPs per sample for inference and for one training step (fwd + bwd)."""
    model = build_model(name)
    batch = 8
    x = torch.zeros(batch, *get_spec(name).input_shape)
    y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    infer = counter.get_total_flops() / batch
    train_model = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(train_model(x), y).backward()
    train = counter.get_total_flops() / batch
    return {"params": param_count(model), "infer_flops_per_sample": infer, "train_flops_per_sample": train}


@cache
def peak_matmul_flops(device: str, precision: str) -> float:
    """Best observed FLOP/s of a square matmul in this dtype on this device (a few repeats)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    n = 4096 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    clock = clock_for(device)
    torch.mm(a, b)  # cold call: library initialisation, not counted
    clock.sync()
    best, spent = float("inf"), 0.0
    for _ in range(20):
        start = clock.mark()
        torch.mm(a, b)
        end = clock.mark()
        clock.sync()
        t = clock.seconds(start, end)
        best, spent = min(best, t), spent + t
        if spent > 1.0:
            break
    return 2 * n**3 / best


def training_utilization(train_flops_per_sample: float, samples_per_s: float, device: str, precision: str) -> dict:
    """Achieved FLOP/s and MFU of a training cell. Autocast runs some ops in fp32, so the denominator
    is the best peak among the dtypes in play (on CPUs without native bf16 the bf16 matmul is slower
    than fp32)."""
    achieved = train_flops_per_sample * samples_per_s
    dtypes = {"fp32", precision} if precision in ("fp32", "bf16", "fp16") else {"fp32"}
    peak = max(peak_matmul_flops(device, d) for d in dtypes)
    return {"achieved_flops_per_s": achieved, "peak_matmul_flops_per_s": peak, "mfu": achieved / peak}
