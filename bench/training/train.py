"""The training benchmark: one model on one backend, seeded, with the training clock, the
evaluation clock and the warm-up kept apart."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.config.build import TrainConfig
from bench.data.mnist import Split, augmenter
from bench.engines import BackendOptions
from bench.engines.backends import Backend
from bench.measure.clocks import clock_for
from bench.measure.rounds import SHADOW_EVERY
from bench.plumbing import console
from bench.training.breakdown import StepShadow
from bench.training.step_loop import StepHooks, StepLoop
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


@dataclass
class TrainStep:
    """One optimisation step on a batch, callable as ``step(x, y)`` (returns the detached loss, no
    host sync) and in its parts, so that a breakdown (``bench.training.breakdown``) can time each:
    ``prepare`` (``augment``: ``bench.data.mnist.augmenter``), ``forward`` (the loss under the
    backend's autocast; ``label_smoothing`` applies to this loss only), ``backward`` (gradients
    zeroed, then the backward pass, scaled when there is a scaler) and ``update`` (the optimizer's
    step, then the schedule's when ``schedule``, as for the whole step)."""

    forward_fn: Callable
    backend: Backend
    opt: torch.optim.Optimizer
    sched: object | None = None
    scaler: object | None = None
    label_smoothing: float = 0.0
    augment: Callable | None = None

    def prepare(self, x):
        return self.augment(x) if self.augment is not None else x

    def forward(self, x, y) -> torch.Tensor:
        with self.backend.autocast():
            return F.cross_entropy(self.forward_fn(x), y, label_smoothing=self.label_smoothing)

    def backward(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def update(self, schedule: bool = True) -> None:
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        if schedule and self.sched is not None:
            self.sched.step()

    def __call__(self, x, y, schedule: bool = True) -> torch.Tensor:
        loss = self.forward(self.prepare(x), y)
        self.backward(loss)
        self.update(schedule)
        return loss.detach()


def make_train_step(forward, backend: Backend, opt, sched=None, scaler=None, label_smoothing: float = 0.0,
                    augment=None) -> TrainStep:
    """One optimisation step on a batch (``TrainStep``)."""
    return TrainStep(forward, backend, opt, sched, scaler, label_smoothing, augment)


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


@dataclass(frozen=True)
class TrainJob:
    """One model trained on one backend: everything training reads."""

    model: str
    backend: Backend
    train: Split
    test: Split
    cfg: TrainConfig
    seed: int
    options: BackendOptions


@dataclass
class TrainResult:
    model: nn.Module
    summary: dict
    epochs: pd.DataFrame
    curve: pd.DataFrame
    test_logits: torch.Tensor  # final model, eager, under the backend's autocast
    blocks: pd.DataFrame  # one row per steady-state step, ``round`` its timed block (the raw training timings)
    diverged: str | None = None  # why training stopped early (bench.training.step_loop.diverged)
    step: TrainStep | None = None  # the run's own step, for a breakdown pass after the training
    more_batches: Iterator | None = None  # endless further training batches for that pass (their own seed)
    shadow: StepShadow | None = None  # the pass's plain steps, made among the timed blocks

    @property
    def test_preds(self) -> torch.Tensor:
        return self.test_logits.argmax(1)


def eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    k = min(evals_per_epoch, steps_per_epoch)
    return {math.ceil(i * steps_per_epoch / k) - 1 for i in range(1, k + 1)}


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


def train_model(job: TrainJob, progress: bool = False, recorder=None) -> TrainResult:
    """Train and time, alone (``train_blocks`` run to its end)."""
    blocks = train_blocks(job, progress, recorder)
    while True:
        try:
            next(blocks)
        except StopIteration as done:
            return done.value


def train_blocks(job: TrainJob, progress: bool = False, recorder=None, block_steps: int | None = None,
                 breakdown: bool = False) -> Generator[dict, None, TrainResult]:
    """Train and time, yielding after every block of ``block_steps`` steps (its timing row; default
    ``block_steps_for``), so that several backends can train in interleaved blocks; returns the
    TrainResult. The step loop is ``bench.training.step_loop``; ``recorder`` (optimization dynamics) is
    called outside the timed regions; ``breakdown``: shadow blocks of plain steps among the timed
    ones (``StepShadow``), for the breakdown's pass."""
    name, backend, train, test, cfg, seed = job.model, job.backend, job.train, job.test, job.cfg, job.seed
    model = build_trainable(name, backend, job.options, seed, cfg.dropout)
    steps_per_epoch = train.train_steps(cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt, sched = build_optimizer(model, cfg, total)
    forward = backend.engine.training_forward(model, backend)
    generator = torch.Generator().manual_seed(seed)
    warmup_steps = warmup_steps_for(total, cfg.warmup_steps)
    bar = console.Stage(f"train {name} {backend.name}", total, "step", enabled=progress)

    def after_step(step: int, loss: torch.Tensor) -> None:
        if recorder is not None:
            recorder.after_step(model, step, loss, opt.param_groups[0]["lr"])
        bar.update()

    step = make_train_step(forward, backend, opt, sched, backend.grad_scaler(), cfg.label_smoothing,
                           augmenter(cfg.augment, seed))
    loop = StepLoop(
        train_step=step, clock=clock_for(backend.device),
        batches=lambda epoch: train.batches(cfg.batch_size, generator),
        evaluate=lambda: evaluate(model, test, backend), epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        eval_at=eval_steps(steps_per_epoch, cfg.evals_per_epoch), warmup_steps=warmup_steps,
        block_steps=block_steps or block_steps_for(total, warmup_steps), target_accuracy=cfg.target_accuracy,
        stop_at_target=cfg.stop_at_target, device=backend.device,
        hooks=StepHooks(before_step=(lambda: recorder.before_step(model)) if recorder is not None else None,
                        after_step=after_step))
    model.train()
    if recorder is not None:
        recorder.start(model)
    more = endless_batches(train, cfg.batch_size, torch.Generator().manual_seed(seed + 1))
    shadow = StepShadow(step, model, more, backend.device) if breakdown else None
    yield from _with_shadow(loop.run(), shadow, loop.block_steps)
    bar.close()
    if recorder is not None:
        recorder.finish(model)
    test_loss, test_acc, logits = loop.final_eval()
    summary = {**loop.figures, "test_loss": test_loss, "test_accuracy": test_acc}
    return TrainResult(model, summary, pd.DataFrame(loop.epoch_rows), pd.DataFrame(loop.curve), logits,
                       pd.DataFrame(loop.blocks), loop.diverged, step, more, shadow)


def _with_shadow(blocks: Generator, shadow: StepShadow | None, steps: int) -> Generator[dict, None, object]:
    """``blocks`` (the step loop's), with a shadow block of ``steps`` plain steps right after every
    SHADOW_EVERY-th timed block, before the turn passes to the backends trained beside it."""
    n = 0
    while True:
        try:
            row = next(blocks)
        except StopIteration as done:
            return done.value
        n += 1
        if shadow is not None and n % SHADOW_EVERY == 0:
            shadow.block(steps)
        yield row


def endless_batches(split: Split, batch_size: int, generator: torch.Generator) -> Iterator:
    """Shuffled batches of ``split``, epoch after epoch."""
    while True:
        yield from split.batches(batch_size, generator)
