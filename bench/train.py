"""The training benchmark: one model on one backend, seeded, with the training clock, the
evaluation clock and the warm-up kept apart."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench.backends import Backend
from bench.config import TrainConfig
from bench.data import Split
from bench.engines import BackendOptions
from bench.measure.clocks import Stopwatch, clock_for, wall_time
from models import build_model, get_spec

EVAL_BATCH = 1000


def build_trainable(name: str, backend: Backend, options: BackendOptions, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name).to(backend.device)
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

    @property
    def test_preds(self) -> torch.Tensor:
        return self.test_logits.argmax(1)


def _eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    k = min(evals_per_epoch, steps_per_epoch)
    return {math.ceil(i * steps_per_epoch / k) - 1 for i in range(1, k + 1)}


def train_model(name: str, backend: Backend, train: Split, test: Split, cfg: TrainConfig, seed: int,
                options: BackendOptions, progress: bool = False, recorder=None) -> TrainResult:
    """Train and time. ``recorder`` (optimization dynamics) is called outside the timed regions."""
    model = build_trainable(name, backend, options, seed)
    steps_per_epoch = train.train_steps(cfg.batch_size)
    opt, sched = build_optimizer(model, cfg, cfg.epochs * steps_per_epoch)
    scaler = backend.grad_scaler()
    forward = backend.engine.training_forward(model, backend)
    clock = clock_for(backend.device)
    generator = torch.Generator().manual_seed(seed)
    eval_at = _eval_steps(steps_per_epoch, cfg.evals_per_epoch)

    train_step = make_train_step(forward, backend, opt, sched, scaler)
    model.train()
    if recorder is not None:
        recorder.start(model)
    curve, epochs = [], []
    global_step = 0
    train_s = eval_s = 0.0
    cold_step_s = warmup_s = 0.0
    steady_time = steady_samples = 0.0
    reached_at = None
    last_eval = (-1, 0.0, 0.0, None)
    wall_start = wall_time()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=f"train {name} {backend.name}", disable=not progress,
               leave=False, unit="step")
    for epoch in range(cfg.epochs):
        epoch_wall0 = wall_time()
        ep = {"data_s": 0.0, "compute_s": 0.0, "steady_s": 0.0, "steady_samples": 0, "eval_s": 0.0}
        marks, sizes, losses = [], [], []
        batches = train.batches(cfg.batch_size, generator)
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
            if recorder is not None:
                recorder.after_step(model, global_step, loss, opt.param_groups[0]["lr"])
            global_step += 1
            bar.update()
            if i not in eval_at:
                continue
            # Close the timed stretch: read its marks, then evaluate off the training clock.
            clock.sync()
            first_step = global_step - len(marks)
            for j, ((a, b, c), n) in enumerate(zip(marks, sizes)):
                data, compute = clock.seconds(a, b), clock.seconds(b, c)
                ep["data_s"] += data
                ep["compute_s"] += compute
                train_s += data + compute
                step = first_step + j
                if step == 0:
                    cold_step_s = data + compute
                if step < cfg.warmup_steps:
                    warmup_s += data + compute
                else:
                    ep["steady_s"] += data + compute
                    ep["steady_samples"] += n
            train_loss = torch.stack(losses).float().mean().item()
            marks, sizes, losses = [], [], []
            with Stopwatch(backend.device) as sw:
                test_loss, test_acc, logits = evaluate(model, test, backend)
            last_eval = (global_step, test_loss, test_acc, logits)
            e = sw.seconds
            ep["eval_s"] += e
            eval_s += e
            curve.append({
                "epoch": epoch + 1, "step": global_step, "epoch_progress": epoch + (i + 1) / steps_per_epoch,
                "train_s": train_s, "wall_s": wall_time() - wall_start, "train_loss": train_loss,
                "test_loss": test_loss, "test_accuracy": test_acc,
            })
            if reached_at is None and test_acc >= cfg.target_accuracy:
                reached_at = train_s
            if reached_at is not None and cfg.stop_at_target:
                break
        steady_time += ep["steady_s"]
        steady_samples += ep["steady_samples"]
        epochs.append({
            "epoch": epoch + 1, "wall_s": wall_time() - epoch_wall0,
            "train_s": ep["data_s"] + ep["compute_s"], "eval_s": ep["eval_s"], "data_s": ep["data_s"],
            "compute_s": ep["compute_s"],
            "samples_per_s": ep["steady_samples"] / ep["steady_s"] if ep["steady_s"] > 0 else float("nan"),
            "train_loss": curve[-1]["train_loss"], "test_accuracy": curve[-1]["test_accuracy"],
        })
        if reached_at is not None and cfg.stop_at_target:
            break
    bar.close()
    if recorder is not None:
        recorder.finish(model)
    at_step, test_loss, test_acc, logits = last_eval
    if at_step != global_step:
        test_loss, test_acc, logits = evaluate(model, test, backend)
    summary = {
        "train_samples_per_s": steady_samples / steady_time if steady_time > 0 else float("nan"),
        "cold_step_s": cold_step_s,
        "warmup_steps": min(cfg.warmup_steps, global_step),
        "warmup_s": warmup_s,
        "train_s": train_s,
        "eval_s": eval_s,
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
    return TrainResult(model, summary, pd.DataFrame(epochs), pd.DataFrame(curve), logits)
