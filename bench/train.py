"""The training benchmark: one model on one backend, seeded, with the training clock, the
evaluation clock and the warm-up kept apart."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Generator
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.backends import Backend
from bench.config import TrainConfig
from bench.data import Split
from bench.engines import BackendOptions
from bench.measure.clocks import Stopwatch, clock_for, timestamp, wall_time
from bench.plumbing import console
from models import build_model, get_spec

EVAL_BATCH = 1000


def build_trainable(name: str, backend: Backend, options: BackendOptions, seed: int, dropout: bool = True
                    ) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name).to(backend.device)
    if not dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    if options.channels_last and get_spec(name).channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(model: nn.Module, cfg: TrainConfig, steps_total: int):
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    sched = None
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps_total)
    return opt, sched


def make_train_step(forward, backend: Backend, opt, sched=None, scaler=None):
    """One optimisation step on a batch; returns the detached loss (no host sync)."""

    def train_step(x, y):
        with backend.autocast():
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        return loss.detach()

    return train_step


@torch.no_grad()
def predict_logits(forward, split: Split, backend: Backend | None = None, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """fp32 logits for a whole split, in order (under the backend's autocast; none: plain fp32)."""
    outs = []
    with backend.autocast() if backend is not None else contextlib.nullcontext():
        for x, _ in split.batches(batch_size):
            outs.append(forward(x).float())
    return torch.cat(outs)


def evaluate(model: nn.Module, split: Split, backend: Backend) -> tuple[float, float, torch.Tensor]:
    """Test loss, accuracy and fp32 logits of the eager model under the backend's autocast."""
    was_training = model.training
    model.eval()
    logits = predict_logits(model, split, backend)
    model.train(was_training)
    loss = F.cross_entropy(logits, split.y).item()
    return loss, (logits.argmax(1) == split.y).float().mean().item(), logits


@dataclass
class TrainResult:
    model: nn.Module
    summary: dict
    epochs: pd.DataFrame
    curve: pd.DataFrame
    test_logits: torch.Tensor  # final model, eager, under the backend's autocast
    blocks: pd.DataFrame  # one row per steady-state step, ``round`` its timed block (the raw training timings)
    diverged: str | None = None  # why training stopped early: a non-finite loss, or one past DIVERGE_FACTOR x the first

    @property
    def test_preds(self) -> torch.Tensor:
        return self.test_logits.argmax(1)


def _eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    k = min(evals_per_epoch, steps_per_epoch)
    return {math.ceil(i * steps_per_epoch / k) - 1 for i in range(1, k + 1)}


def _rng_state(device: str) -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state() if device == "cuda" else None


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1])


DIVERGE_FACTOR = 20.0  # a training loss above this many times the first step's has diverged


def _diverged(losses: list[torch.Tensor], first_loss: float) -> str | None:
    """Why the losses of a block mean training diverged, or None. Reads the losses (a host sync),
    so it runs at a block's end, after its timing is closed."""
    values = torch.stack(losses).float()
    if not torch.isfinite(values).all():
        return "diverged: non-finite training loss"
    worst = float(values.max())
    if worst > DIVERGE_FACTOR * first_loss:
        return f"diverged: training loss {worst:.3g} grew past {DIVERGE_FACTOR:g}x the first step's ({first_loss:.3g})"
    return None


TRAIN_BLOCKS = 20  # timed blocks per training run, when it has the steps (at least MIN_TRAIN_BLOCKS)
MIN_TRAIN_BLOCKS = 5


def warmup_steps_for(total_steps: int, warmup_steps: int) -> int:
    """The warm-up actually taken: ``warmup_steps``, shortened so that at least MIN_TRAIN_BLOCKS
    steady-state steps remain (one per block) when the run has that many steps."""
    if total_steps > MIN_TRAIN_BLOCKS:
        return max(0, min(warmup_steps, total_steps - MIN_TRAIN_BLOCKS))
    return min(warmup_steps, 1 if total_steps > 1 else 0)  # the cold step apart, the rest timed


def block_steps_for(total_steps: int, warmup_steps: int = 0) -> int:
    """Training steps per timed block, the unit of interleaving and of the raw timings: about
    TRAIN_BLOCKS blocks of the steady-state steps, 1 to 50 steps each, so that every run that has
    MIN_TRAIN_BLOCKS steady steps yields at least that many blocks (an interval per cell)."""
    steady = max(1, total_steps - warmup_steps)
    return max(1, min(50, steady // TRAIN_BLOCKS))


def train_model(name: str, backend: Backend, train: Split, test: Split, cfg: TrainConfig, seed: int,
                options: BackendOptions, progress: bool = False, recorder=None) -> TrainResult:
    """Train and time, alone (``train_blocks`` run to its end)."""
    blocks = train_blocks(name, backend, train, test, cfg, seed, options, progress, recorder)
    while True:
        try:
            next(blocks)
        except StopIteration as done:
            return done.value


def train_blocks(name: str, backend: Backend, train: Split, test: Split, cfg: TrainConfig, seed: int,
                 options: BackendOptions, progress: bool = False, recorder=None,
                 block_steps: int | None = None) -> Generator[dict, None, TrainResult]:
    """Train and time, yielding after every block of ``block_steps`` steps (its timing row; default
    ``block_steps_for``), so
    that several backends can train in interleaved blocks; returns the TrainResult. The clock is
    synchronized at every block's end. ``recorder`` (optimization dynamics) is called outside the
    timed regions."""
    model = build_trainable(name, backend, options, seed, cfg.dropout)
    steps_per_epoch = train.train_steps(cfg.batch_size)
    opt, sched = build_optimizer(model, cfg, cfg.epochs * steps_per_epoch)
    scaler = backend.grad_scaler()
    forward = backend.engine.training_forward(model, backend)
    clock = clock_for(backend.device)
    generator = torch.Generator().manual_seed(seed)
    eval_at = _eval_steps(steps_per_epoch, cfg.evals_per_epoch)
    warmup_steps = warmup_steps_for(cfg.epochs * steps_per_epoch, cfg.warmup_steps)
    block_steps = block_steps or block_steps_for(cfg.epochs * steps_per_epoch, warmup_steps)

    train_step = make_train_step(forward, backend, opt, sched, scaler)
    model.train()
    if recorder is not None:
        recorder.start(model)
    curve, epochs, blocks = [], [], []
    blocks_done = 0
    global_step = 0
    totals = {"train_s": 0.0, "eval_s": 0.0, "cold_step_s": 0.0, "warmup_s": 0.0}
    block = {"steady_samples": 0, "rows": []}
    block_losses: list[torch.Tensor] = []
    first_loss = diverged = None
    steady_time = steady_samples = 0.0
    reached_at = None
    last_eval = (-1, 0.0, 0.0, None)
    wall_start = wall_time()
    bar = console.Stage(f"train {name} {backend.name}", cfg.epochs * steps_per_epoch, "step", enabled=progress)

    def close_stretch(marks, sizes, ep) -> None:
        """Read the marks of the steps since the last sync (the clock is synchronized first)."""
        clock.sync()
        first_step = global_step - len(marks)
        for j, ((a, b, c), n) in enumerate(zip(marks, sizes)):
            data, compute = clock.seconds(a, b), clock.seconds(b, c)
            ep["data_s"] += data
            ep["compute_s"] += compute
            totals["train_s"] += data + compute
            step = first_step + j
            if step == 0:
                totals["cold_step_s"] = data + compute
            if step < warmup_steps:
                totals["warmup_s"] += data + compute
            else:
                ep["steady_s"] += data + compute
                ep["steady_samples"] += n
                block["steady_samples"] += n
                block["rows"].append({"step": step, "samples": n, "seconds": data + compute})
        marks.clear()
        sizes.clear()

    for epoch in range(cfg.epochs):
        epoch_wall0 = wall_time()
        ep = {"data_s": 0.0, "compute_s": 0.0, "steady_s": 0.0, "steady_samples": 0, "eval_s": 0.0}
        marks, sizes, losses = [], [], []
        batches = train.batches(cfg.batch_size, generator)
        stop = False
        for i in range(steps_per_epoch):
            if recorder is not None:
                recorder.before_step(model)
            t0 = clock.mark()
            x, y = next(batches)
            t1 = clock.mark()
            loss = train_step(x, y)
            t2 = clock.mark()
            marks.append((t0, t1, t2))
            sizes.append(len(y))
            losses.append(loss)
            block_losses.append(loss)
            if recorder is not None:
                recorder.after_step(model, global_step, loss, opt.param_groups[0]["lr"])
            global_step += 1
            bar.update()
            if i in eval_at:
                # Close the timed stretch, then evaluate off the training clock.
                close_stretch(marks, sizes, ep)
                train_loss = torch.stack(losses).float().mean().item()
                losses = []
                with Stopwatch(backend.device) as sw:
                    test_loss, test_acc, logits = evaluate(model, test, backend)
                last_eval = (global_step, test_loss, test_acc, logits)
                ep["eval_s"] += sw.seconds
                totals["eval_s"] += sw.seconds
                curve.append({
                    "epoch": epoch + 1, "step": global_step, "epoch_progress": epoch + (i + 1) / steps_per_epoch,
                    "train_s": totals["train_s"], "wall_s": wall_time() - wall_start, "train_loss": train_loss,
                    "test_loss": test_loss, "test_accuracy": test_acc,
                })
                if reached_at is None and test_acc >= cfg.target_accuracy:
                    reached_at = totals["train_s"]
                stop = reached_at is not None and cfg.stop_at_target
            steady_steps = global_step - warmup_steps
            if (steady_steps > 0 and steady_steps % block_steps == 0) or stop or (
                    epoch == cfg.epochs - 1 and i == steps_per_epoch - 1):
                close_stretch(marks, sizes, ep)
                first_loss = first_loss if first_loss is not None else float(block_losses[0])
                diverged = _diverged(block_losses, first_loss)
                block_losses = []
                stop = stop or diverged is not None
                if block["steady_samples"]:
                    # one row per steady step, its block the round (the unit of pairing)
                    now = timestamp()
                    blocks += [{"round": blocks_done, "process": 0, "timestamp_s": now, **row} for row in block["rows"]]
                    blocks_done += 1
                    rng = _rng_state(backend.device)  # dropout's random stream is this run's own,
                    yield blocks[-1]
                    _set_rng_state(rng)  # whatever trained in between (interleaved) drew from it
                block.update(steady_samples=0, rows=[])
            if stop:
                break
        steady_time += ep["steady_s"]
        steady_samples += ep["steady_samples"]
        epochs.append({
            "epoch": epoch + 1, "wall_s": wall_time() - epoch_wall0,
            "train_s": ep["data_s"] + ep["compute_s"], "eval_s": ep["eval_s"], "data_s": ep["data_s"],
            "compute_s": ep["compute_s"],
            "samples_per_s": ep["steady_samples"] / ep["steady_s"] if ep["steady_s"] > 0 else float("nan"),
            "train_loss": curve[-1]["train_loss"] if curve else float("nan"),
            "test_accuracy": curve[-1]["test_accuracy"] if curve else float("nan"),
        })
        if stop:
            break
    bar.close()
    if recorder is not None:
        recorder.finish(model)
    at_step, test_loss, test_acc, logits = last_eval
    if at_step != global_step:
        test_loss, test_acc, logits = evaluate(model, test, backend)
    summary = {
        # all steady-state samples over all steady-state seconds; the headline train_samples_per_s is
        # the median over blocks (bench.measure.rounds.round_stats)
        "train_mean_samples_per_s": steady_samples / steady_time if steady_time > 0 else float("nan"),
        "cold_step_s": totals["cold_step_s"],
        "warmup_steps": min(warmup_steps, global_step),
        "warmup_s": totals["warmup_s"],
        "train_s": totals["train_s"],
        "eval_s": totals["eval_s"],
        "wall_s": wall_time() - wall_start,
        "epochs_run": len(epochs),
        "steps": global_step,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "target_accuracy": cfg.target_accuracy,
        "time_to_accuracy_s": reached_at if reached_at is not None else float("nan"),
        "data_s": float(sum(e["data_s"] for e in epochs)),
        "compute_s": float(sum(e["compute_s"] for e in epochs)),
    }
    return TrainResult(model, summary, pd.DataFrame(epochs), pd.DataFrame(curve), logits, pd.DataFrame(blocks),
                       diverged)
