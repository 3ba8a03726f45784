"""Data-parallel training on one rank of a torchrun job: DistributedDataParallel over the
process group torchrun set up (gloo on CPU, nccl on CUDA), seeded so that results repeat.

Data: every rank parses the same MNIST files; each epoch all ranks draw the same seeded
permutation, and global batch ``i`` is its ``i``-th slice of ``world x per_rank_batch`` images, of
which rank ``r`` takes the ``r``-th contiguous part and copies it into its own resident shard for
the epoch. With equal per-rank batches, DDP's averaged gradient is the gradient of the global
batch's mean loss: with dropout off, N ranks reach the weights one process reaches on the same
global batch (to floating-point reduction order).

Clocks: every step is timed on each rank (synchronized first on CUDA); a communication hook wraps
DDP's all-reduce and times each bucket from launch to completion (host clock on CPU, CUDA events
on GPU), so a step splits into its exposed all-reduce time (from the last bucket's launch, when
the backward pass has produced every gradient, to the last completion) and the rest (compute). Evaluation runs on every
rank (the weights are identical), off the training clock."""

from __future__ import annotations

import os
import resource
import socket
import time

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bench.data.mnist import augmenter
from bench.measure.clocks import clock_for
from bench.measure.figures import speed_figures
from bench.training.step_loop import StepHooks, StepLoop
from bench.training.train import (
    TrainJob,
    block_steps_for,
    build_optimizer,
    build_trainable,
    evaluate,
    make_train_step,
    warmup_steps_for,
)


class AllReduceTimer:
    """A DDP communication hook: averages the bucket as DDP's default hook does, and records when
    each bucket's all-reduce was launched and when it completed."""

    def __init__(self, device: str) -> None:
        self.device, self.spans = device, []

    def hook(self, state, bucket):
        world = dist.get_world_size()
        buffer = bucket.buffer().div_(world)
        if self.device == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            fut = dist.all_reduce(buffer, async_op=True).get_future()

            def done(f):
                end = torch.cuda.Event(enable_timing=True)
                end.record()
                self.spans.append((start, end))
                return f.value()[0]
        else:
            start = time.perf_counter()
            fut = dist.all_reduce(buffer, async_op=True).get_future()

            def done(f):
                self.spans.append((start, time.perf_counter()))
                return f.value()[0]
        return fut.then(done)

    def take(self) -> tuple[float, float]:
        """Since the last call (one step): the all-reduce span, from the first bucket's launch to
        the last one's completion (it overlaps the backward pass), and the exposed all-reduce time,
        from the last launch (the backward pass has produced every gradient) to the last completion:
        the communication the backward pass did not hide."""
        spans, self.spans = self.spans, []
        if not spans:
            return 0.0, 0.0
        if self.device == "cuda":
            torch.cuda.synchronize()
            first = spans[0][0]
            end = max(first.elapsed_time(e) for _, e in spans) / 1e3
            last_launch = max(first.elapsed_time(s) for s, _ in spans) / 1e3
            return end, max(0.0, end - last_launch)
        first, last_launch, end = min(s for s, _ in spans), max(s for s, _ in spans), max(e for _, e in spans)
        return end - first, max(0.0, end - last_launch)


def rank_layout() -> dict:
    """Where this rank ran, and its memory high-water marks (process RSS; CUDA allocator peak)."""
    return {"rank": dist.get_rank(), "local_rank": int(os.environ.get("LOCAL_RANK", 0)),
            "node_rank": int(os.environ.get("GROUP_RANK", 0)), "host": socket.gethostname(), "pid": os.getpid(),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None}


def ddp_train(job: TrainJob, per_rank_batch: int) -> tuple[dict, torch.nn.Module] | None:
    """Train on this rank through the one step loop (``bench.training.step_loop``), every step synchronized
    so that its exposed all-reduce time is its own; every rank returns its own records, rank 0 gets
    them all gathered: (tables, model) on rank 0, None on the others."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model_name, backend, train, test, cfg, seed = job.model, job.backend, job.train, job.test, job.cfg, job.seed
    model = build_trainable(model_name, backend, job.options, seed, cfg.dropout)
    torch.manual_seed(seed + rank)  # dropout: each rank its own (seeded) masks
    device_ids = [torch.cuda.current_device()] if backend.device == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=device_ids)
    timer = AllReduceTimer(backend.device)
    ddp.register_comm_hook(None, timer.hook)
    global_batch = per_rank_batch * world
    steps_per_epoch = max(1, len(train) // global_batch)
    total = cfg.epochs * steps_per_epoch
    opt, sched = build_optimizer(ddp, cfg, total)
    generator = torch.Generator().manual_seed(seed)

    def shard(epoch: int):
        """This rank's part of each global batch of the epoch, copied into one resident shard."""
        perm = torch.randperm(len(train), generator=generator)[: steps_per_epoch * global_batch]
        mine = perm.view(steps_per_epoch, world, per_rank_batch)[:, rank].reshape(-1).to(train.y.device)
        shard_x, shard_y = train.x[mine], train.y[mine]
        return ((shard_x[i * per_rank_batch:(i + 1) * per_rank_batch], shard_y[i * per_rank_batch:(i + 1) *
                 per_rank_batch]) for i in range(steps_per_epoch))

    def allreduce_fields() -> dict:
        span, exposed = timer.take()
        return {"allreduce_s": exposed, "allreduce_span_s": span}

    warmup_steps = warmup_steps_for(total, cfg.warmup_steps)
    loop = StepLoop(
        train_step=make_train_step(backend.engine.training_forward(ddp, backend), backend, opt, sched,
                                   backend.grad_scaler(), cfg.label_smoothing, augmenter(cfg.augment, seed)),
        clock=clock_for(backend.device), batches=shard, evaluate=lambda: evaluate(model, test, backend),
        epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, eval_at={steps_per_epoch - 1},
        warmup_steps=warmup_steps, block_steps=block_steps_for(total, warmup_steps),
        target_accuracy=cfg.target_accuracy, stop_at_target=cfg.stop_at_target, device=backend.device,
        sync_every_step=True, check_divergence=False,  # ranks must stop together: only at a shared check
        hooks=StepHooks(step_fields=allreduce_fields, after_epoch=_epoch_line(
            f"{model_name} {backend.name} x{world}", cfg.epochs) if rank == 0 else None))
    ddp.train()
    for _ in loop.run():
        pass
    gathered: list = [None] * world
    steps = [{"rank": rank, **row} for row in loop.steps]
    dist.all_gather_object(gathered, {"steps": steps, "layout": rank_layout()})
    if rank != 0:
        return None
    test_loss, test_acc, _ = loop.final_eval()
    figures = loop.figures
    summary = {"test_loss": test_loss, "test_accuracy": test_acc,
               **{k: figures[k] for k in ("target_accuracy", "time_to_accuracy_s", "train_s", "eval_s", "wall_s",
                                          "epochs_run", "steps")},
               "optimizer": cfg.optimizer, "schedule": cfg.schedule, "lr": cfg.lr, "seed": seed, "epochs": cfg.epochs,
               "dropout": cfg.dropout}
    tables = rank_tables(gathered, world, per_rank_batch, loop.block_steps)
    summary.update(tables.pop("figures"))
    return {"summary": pd.DataFrame([summary]), "epochs": pd.DataFrame(loop.epoch_rows),
            "curve": pd.DataFrame(loop.curve), **tables}, model


def _epoch_line(label: str, epochs: int):
    """Rank 0's progress: one line per finished epoch, as it ends (the launcher shows lines starting
    with "rank 0:")."""

    def show(row: dict) -> None:
        print(f"rank 0: {label}: epoch {row['epoch']}/{epochs}, {row['epoch_samples_per_s']:,.0f} samples/s per rank, "
              f"test accuracy {row['test_accuracy']:.4f}", flush=True)

    return show


def rank_tables(gathered: list[dict], world: int, per_rank_batch: int, block_steps: int) -> dict:
    """From every rank's step records: the raw timings (one row per rank and block of steady
    steps), the per-rank table, and the cell's figures. A block's global throughput is the global
    batch times its steps over its slowest rank's time (a step ends for all at the all-reduce)."""
    steps = pd.DataFrame([s for g in gathered for s in g["steps"]])
    steady = steps[~steps.warmup].copy()
    if steady.empty:  # fewer steps than the warm-up: the figures come from every step
        steady = steps.copy()
    steady["block"] = (steady.step - steady.step.min()) // block_steps
    per_block = steady.groupby(["block", "rank"]).agg(seconds=("seconds", "sum"), samples=("samples", "sum"),
                                                       steps=("step", "size"), timestamp_s=("timestamp_s", "max"))
    timings = per_block.reset_index().rename(columns={"block": "round", "rank": "process"})
    slowest = per_block.groupby("block").seconds.max()
    block_rate = per_block.groupby("block").samples.sum() / slowest
    per_rank = steady.groupby("rank").agg(steady_s=("seconds", "sum"), samples=("samples", "sum"),
                                          allreduce_s=("allreduce_s", "sum"),
                                          allreduce_span_s=("allreduce_span_s", "sum"), steps=("step", "size"))
    per_rank["compute_s"] = per_rank.steady_s - per_rank.allreduce_s
    per_rank["rank_samples_per_s"] = per_rank.samples / per_rank.steady_s
    per_rank["allreduce_share"] = per_rank.allreduce_s / per_rank.steady_s
    layout = pd.DataFrame([g["layout"] for g in gathered]).set_index("rank")
    ranks = per_rank.join(layout).reset_index()
    if layout.cuda_max_allocated_bytes.notna().any():
        figures_cuda = {"cuda_max_allocated_bytes": float(layout.cuda_max_allocated_bytes.max())}
    else:
        figures_cuda = {}
    total_s = float(per_rank.steady_s.max())
    figures = {
        "world_size": world, "per_rank_batch": per_rank_batch, "global_batch": per_rank_batch * world,
        # the same figures as one process's training cell, a block's value being the slowest rank's
        **speed_figures((1 / block_rate).to_numpy(), "train"),
        "train_mean_samples_per_s": float(steady.groupby("rank").samples.sum().sum() / total_s),
        "allreduce_per_step_s": float(np.median(per_rank.allreduce_s / per_rank.steps)),
        "allreduce_span_per_step_s": float(np.median(per_rank.allreduce_span_s / per_rank.steps)),
        "step_s": float(np.median(per_rank.steady_s / per_rank.steps)),
        "allreduce_share": float(np.median(per_rank.allreduce_share)),
        "slowest_rank": int(per_rank.steady_s.idxmax()),
        "rank_spread": float(per_rank.steady_s.max() / per_rank.steady_s.min() - 1),
        "warmup_steps": int(steps.warmup.sum() // world),
        "nodes": int(layout.host.nunique()),
        "peak_rss_bytes": int(layout.peak_rss_bytes.max()), "rss_scope": "process, the largest rank",
        **figures_cuda,
    }
    return {"timings": timings, "ranks": ranks, "figures": figures}
