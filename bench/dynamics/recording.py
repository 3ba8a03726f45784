"""Optimization dynamics recorded during training (``--dynamics``; off by default, and with it
off nothing here runs). Called by ``bench.training.train`` outside every timed region.

Per layer and recorded step: gradient norm, mean and max |grad|, weight norm, and the
update-to-weight ratio ||Δθ|| / ||θ|| from the *actual* parameter change (right for Adam,
where the step is not lr × grad). Per step: loss and learning rate. Flattened parameters at
initialization, every ``checkpoint_every`` steps and at the end, for trajectory analysis.
Recording reads parameters and gradients only, so it never changes the training result.
"""

from __future__ import annotations

import io

import pandas as pd
import torch
from torch import nn

MAX_CHECKPOINTS = 12  # besides init and final: bounds the size of checkpoints.pt


def layers(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """Modules that own parameters, named like ``1:Linear`` (Sequential index and type)."""
    out = []
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            out.append((f"{name}:{type(module).__name__}", params))
    return out


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float().cpu()


class DynamicsRecorder:
    """``fmt``: the reduced format the forward pass casts the weights to (autocast's bf16 or fp16),
    for the share of each step's updates too small to change a weight in that format."""

    def __init__(self, total_steps: int, every: int = 1, fmt: torch.dtype | None = None) -> None:
        self.every = max(1, every)
        self.fmt = fmt
        self.checkpoint_every = max(1, total_steps // MAX_CHECKPOINTS)
        self.layer_rows: list[dict] = []
        self.step_rows: list[dict] = []
        self.checkpoints: list[tuple[int, torch.Tensor]] = []
        self._before: list[torch.Tensor] | None = None
        self._step = 0

    def start(self, model: nn.Module) -> None:
        self._layers = layers(model)
        self.checkpoints.append((0, flat_params(model)))

    def before_step(self, model: nn.Module) -> None:
        if self._step % self.every == 0:
            self._before = [p.detach().clone() for _, ps in self._layers for p in ps]

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, loss: torch.Tensor, lr: float) -> None:
        self._step = step + 1
        if step % self.every == 0 and self._before is not None:
            before = iter(self._before)
            for name, params in self._layers:
                grads = [p.grad.detach().float() for p in params if p.grad is not None]
                prev = [next(before) for _ in params]
                delta = torch.sqrt(sum(((p.detach() - b).float() ** 2).sum() for p, b in zip(params, prev)))
                w_prev = torch.sqrt(sum((b.float() ** 2).sum() for b in prev))
                w_now = torch.sqrt(sum((p.detach().float() ** 2).sum() for p in params))
                g = torch.cat([x.reshape(-1) for x in grads]) if grads else torch.zeros(1)
                row = {"step": step, "layer": name, "grad_norm": g.norm().item(),
                       "grad_abs_mean": g.abs().mean().item(), "grad_abs_max": g.abs().max().item(),
                       "weight_norm": w_now.item(),
                       "update_ratio": (delta / w_prev).item() if w_prev > 0 else float("nan")}
                if self.fmt is not None:
                    row["updates_below_spacing"] = self._lost(params, prev)
                self.layer_rows.append(row)
            self.step_rows.append({"step": step, "loss": float(loss), "lr": lr})
            self._before = None
        if (step + 1) % self.checkpoint_every == 0:
            self.checkpoints.append((step + 1, flat_params(model)))

    def _lost(self, params: list[nn.Parameter], prev: list[torch.Tensor]) -> float:
        """Of the weights this step changed, the share whose value in ``fmt`` it left unchanged: an
        update below the weight's spacing in that format, invisible to the forward pass until such
        updates add up."""
        changed = lost = 0
        for p, b in zip(params, prev):
            moved = p.detach() != b
            changed += int(moved.sum())
            lost += int((moved & (p.detach().to(self.fmt) == b.to(self.fmt))).sum())
        return lost / changed if changed else float("nan")

    def finish(self, model: nn.Module) -> None:
        if self.checkpoints[-1][0] != self._step:
            self.checkpoints.append((self._step, flat_params(model)))

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"dynamics_layers": pd.DataFrame(self.layer_rows), "dynamics_steps": pd.DataFrame(self.step_rows)}

    def checkpoint_files(self) -> dict[str, bytes]:
        """The files the training cell keeps beside its tables: ``checkpoints.pt``."""
        buf = io.BytesIO()
        torch.save({"steps": [s for s, _ in self.checkpoints],
                    "params": torch.stack([p for _, p in self.checkpoints])}, buf)
        return {"checkpoints.pt": buf.getvalue()}


def load_checkpoints(path) -> tuple[list[int], torch.Tensor]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return data["steps"], data["params"]
