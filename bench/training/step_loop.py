"""The one training step loop. The single-process training cell (``bench.training.train``) and every rank
of a data-parallel job (``bench.distributed.ddp``) drive it; what differs between them comes in as
parameters and hooks: where each epoch's batches come from (a shuffled split, a rank's shard),
whether every step is synchronized (DDP: to time its all-reduce), what else a step records, and
the dynamics recorder.

Clocks: a step is timed in two marks (data: fetching the batch; compute: the optimisation step).
The marks of a stretch of steps are read at its end, after one synchronization, so the device is
not stalled per step; a stretch ends at an evaluation (which runs off the training clock), at the
end of a block of ``block_steps`` steady-state steps, and at the end of the run. The first
``warmup_steps`` steps (the cold first step among them) are timed apart from the steady state."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.measure.clocks import Stopwatch, timestamp, wall_time

DIVERGE_FACTOR = 20.0  # a training loss above this many times the first step's has diverged


@dataclass
class StepHooks:
    """What a driver adds to each step (all optional)."""

    before_step: Callable[[], None] | None = None
    after_step: Callable[[int, torch.Tensor], None] | None = None  # (global step, loss): dynamics, progress
    step_fields: Callable[[], dict] | None = None  # after a synchronized step: its extra columns (all-reduce)
    after_epoch: Callable[[dict], None] | None = None  # (the epoch's row, as it ends): progress lines


@dataclass
class StepLoop:
    train_step: Callable[[Any, Any], torch.Tensor]  # (x, y) -> detached loss, no host sync
    clock: Any  # bench.measure.clocks: mark, sync, seconds
    batches: Callable[[int], Iterator]  # epoch -> that epoch's (x, y) batches
    evaluate: Callable[[], tuple[float, float, torch.Tensor]]  # -> test loss, accuracy, logits (off the clock)
    epochs: int
    steps_per_epoch: int
    eval_at: set[int]  # step indices within an epoch after which the test split is evaluated
    warmup_steps: int
    block_steps: int  # steady-state steps per timed block (the unit of interleaving)
    target_accuracy: float
    stop_at_target: bool
    device: str  # whose random stream a yield keeps (dropout's, for interleaved runs)
    sync_every_step: bool = False
    check_divergence: bool = True
    hooks: StepHooks = field(default_factory=StepHooks)

    def __post_init__(self) -> None:
        self.steps: list[dict] = []  # every step: step, epoch, samples, seconds, data_s, compute_s, warmup, loss...
        self.blocks: list[dict] = []  # steady steps by block: round, process, timestamp_s, step, samples, seconds,
        # loss (the training loss of that step: the loss curve between the test split's checks)
        self.curve: list[dict] = []
        self.epoch_rows: list[dict] = []
        self.totals = {"train_s": 0.0, "eval_s": 0.0, "cold_step_s": 0.0, "warmup_s": 0.0, "steady_s": 0.0,
                       "steady_samples": 0, "data_s": 0.0, "compute_s": 0.0}
        self.global_step, self.reached_at, self.diverged = 0, None, None
        self.last_eval: tuple = (-1, float("nan"), float("nan"), None)
        self._marks: list[tuple] = []
        self._block_rows: list[dict] = []
        self._block_losses: list[float] = []  # read once per stretch, after the clock's sync
        self._first_loss: float | None = None
        self.wall_start = wall_time()

    def run(self) -> Generator[dict, None, StepLoop]:
        """Train; yields after every block (its last timing row) so that several runs can
        interleave, and returns itself, its records complete."""
        for epoch in range(self.epochs):
            stop = yield from self._epoch(epoch)
            if stop:
                break
        return self

    def _epoch(self, epoch: int) -> Generator[dict, None, bool]:
        wall0 = wall_time()
        ep = {"data_s": 0.0, "compute_s": 0.0, "steady_s": 0.0, "steady_samples": 0, "eval_s": 0.0}
        since = len(self.steps)  # the steps whose training loss the next check reports
        batches = self.batches(epoch)
        stop = False
        for i in range(self.steps_per_epoch):
            self._step(epoch, batches)
            if self.sync_every_step:
                self._close_stretch(epoch, ep)
            if i in self.eval_at:
                self._close_stretch(epoch, ep)
                self._evaluate(epoch, i, ep, statistics.fmean(r["loss"] for r in self.steps[since:]))
                since = len(self.steps)
                stop = self.reached_at is not None and self.stop_at_target
            steady = self.global_step - self.warmup_steps
            last = epoch == self.epochs - 1 and i == self.steps_per_epoch - 1
            if (steady > 0 and steady % self.block_steps == 0) or stop or last:
                stop = (yield from self._end_block(epoch, ep)) or stop
            if stop:
                break
        self._end_epoch(epoch, ep, wall0)
        return stop

    def _step(self, epoch: int, batches: Iterator) -> torch.Tensor:
        if self.hooks.before_step is not None:
            self.hooks.before_step()
        t0 = self.clock.mark()
        x, y = next(batches)
        t1 = self.clock.mark()
        loss = self.train_step(x, y)
        t2 = self.clock.mark()
        self._marks.append((t0, t1, t2, len(y), loss))
        if self.hooks.after_step is not None:
            self.hooks.after_step(self.global_step, loss)
        self.global_step += 1
        return loss

    def _close_stretch(self, epoch: int, ep: dict) -> None:
        """Read the marks of the steps since the last synchronization (synchronizing first)."""
        if not self._marks:
            return
        self.clock.sync()
        first = self.global_step - len(self._marks)
        now = timestamp()
        losses = torch.stack([m[4] for m in self._marks]).float().tolist()  # one read, after the clock's sync
        self._block_losses += losses
        for j, (a, b, c, n, _) in enumerate(self._marks):
            data, compute = self.clock.seconds(a, b), self.clock.seconds(b, c)
            step, seconds = first + j, data + compute
            warmup = step < self.warmup_steps
            row = {"step": step, "epoch": epoch + 1, "samples": n, "seconds": seconds, "data_s": data,
                   "compute_s": compute, "warmup": warmup, "timestamp_s": now, "loss": losses[j]}
            if self.sync_every_step and self.hooks.step_fields is not None:
                row.update(self.hooks.step_fields())
            self.steps.append(row)
            ep["data_s"] += data
            ep["compute_s"] += compute
            self.totals["train_s"] += seconds
            if step == 0:
                self.totals["cold_step_s"] = seconds
            if warmup:
                self.totals["warmup_s"] += seconds
            else:
                ep["steady_s"] += seconds
                ep["steady_samples"] += n
                self._block_rows.append({"step": step, "samples": n, "seconds": seconds, "loss": losses[j]})
        self._marks.clear()

    def _evaluate(self, epoch: int, i: int, ep: dict, train_loss: float) -> None:
        """Evaluate off the training clock; one curve point; the first check that reaches the target."""
        with Stopwatch(self.device) as sw:
            test_loss, test_acc, logits = self.evaluate()
        seconds = sw.seconds
        self.last_eval = (self.global_step, test_loss, test_acc, logits)
        ep["eval_s"] += seconds
        self.totals["eval_s"] += seconds
        self.curve.append({"epoch": epoch + 1, "step": self.global_step,
                           "epoch_progress": epoch + (i + 1) / self.steps_per_epoch,
                           "train_s": self.totals["train_s"], "wall_s": wall_time() - self.wall_start,
                           "train_loss": train_loss, "test_loss": test_loss, "test_accuracy": test_acc})
        if self.reached_at is None and test_acc >= self.target_accuracy:
            self.reached_at = self.totals["train_s"]

    def _end_block(self, epoch: int, ep: dict) -> Generator[dict, None, bool]:
        """Close a block: its timings become rows of the raw table, divergence is checked (a host
        sync, after the timing is closed), and the loop yields to whatever trains beside it."""
        self._close_stretch(epoch, ep)
        if self._first_loss is None and self._block_losses:
            self._first_loss = self._block_losses[0]
        if self.check_divergence and self._block_losses:
            self.diverged = diverged(self._block_losses, self._first_loss)
        self._block_losses = []
        if self._block_rows:
            now, r = timestamp(), self.blocks[-1]["round"] + 1 if self.blocks else 0
            self.blocks += [{"round": r, "process": 0, "timestamp_s": now, **row} for row in self._block_rows]
            self._block_rows = []
            rng = _rng_state(self.device)  # dropout's random stream is this run's own,
            yield self.blocks[-1]
            _set_rng_state(rng)  # whatever trained in between (interleaved) drew from it
        return self.diverged is not None

    def _end_epoch(self, epoch: int, ep: dict, wall0: float) -> None:
        self.totals["steady_s"] += ep["steady_s"]
        self.totals["steady_samples"] += ep["steady_samples"]
        self.totals["data_s"] += ep["data_s"]
        self.totals["compute_s"] += ep["compute_s"]
        self.epoch_rows.append({
            "epoch": epoch + 1, "wall_s": wall_time() - wall0, "train_s": ep["data_s"] + ep["compute_s"],
            "eval_s": ep["eval_s"], "data_s": ep["data_s"], "compute_s": ep["compute_s"],
            "epoch_samples_per_s": ep["steady_samples"] / ep["steady_s"] if ep["steady_s"] > 0 else float("nan"),
            "train_loss": self.curve[-1]["train_loss"] if self.curve else float("nan"),
            "test_accuracy": self.curve[-1]["test_accuracy"] if self.curve else float("nan"),
        })
        if self.hooks.after_epoch is not None:
            self.hooks.after_epoch(self.epoch_rows[-1])

    def final_eval(self) -> tuple[float, float, torch.Tensor]:
        """Test loss, accuracy and logits of the final weights (evaluated again unless the last
        check was at the last step)."""
        at_step, test_loss, test_acc, logits = self.last_eval
        return (test_loss, test_acc, logits) if at_step == self.global_step else self.evaluate()

    @property
    def figures(self) -> dict:
        """The run's figures in the summary's columns."""
        t = self.totals
        return {
            # all steady-state samples over all steady-state seconds; the headline train_samples_per_s is
            # the median over blocks (bench.measure.figures.cell_speed)
            "train_mean_samples_per_s": t["steady_samples"] / t["steady_s"] if t["steady_s"] > 0 else float("nan"),
            "cold_step_s": t["cold_step_s"], "warmup_steps": min(self.warmup_steps, self.global_step),
            "warmup_s": t["warmup_s"], "train_s": t["train_s"], "eval_s": t["eval_s"],
            "wall_s": wall_time() - self.wall_start, "epochs_run": len(self.epoch_rows), "steps": self.global_step,
            "target_accuracy": self.target_accuracy,
            "time_to_accuracy_s": self.reached_at if self.reached_at is not None else float("nan"),
            "data_s": t["data_s"], "compute_s": t["compute_s"],
        }


def diverged(losses: list[float], first_loss: float) -> str | None:
    """Why the losses of a block (read at the ends of its stretches) mean training diverged, or None."""
    if not all(math.isfinite(v) for v in losses):
        return "diverged: non-finite training loss"
    worst = max(losses)
    if worst > DIVERGE_FACTOR * first_loss:
        return f"diverged: training loss {worst:.3g} grew past {DIVERGE_FACTOR:g}x the first step's ({first_loss:.3g})"
    return None


def _rng_state(device: str) -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state() if device == "cuda" else None


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1])
