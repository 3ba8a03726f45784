"""Backends prepared again in a fresh process (a timing worker, a serving process) from the weights
they were prepared from in the run's process: the run hands over each backend's state dict, the
settings and the calibration images (``handed_over``); the fresh process builds and prepares each
backend as the run did (``prepare_again``). A backend added at run time, rather than by a module
named in ``$MNIST_BENCH_PLUGINS``, is not known to a fresh process."""

from __future__ import annotations

import torch

from bench.engines.backends import BACKENDS
from bench.training.train import build_trainable


def handed_over(model: str, weights: dict[str, torch.nn.Module], cfg, calibration: torch.Tensor) -> dict:
    """What a fresh process needs to prepare the backends of ``weights`` (by name) again: the keys
    ``prepare_again`` reads, the weights on the CPU, and what their engines made here that the fresh
    process may read instead of making again (an engine's optional ``handed_over``)."""
    return {"model": model, "weights": {name: {k: v.cpu() for k, v in net.state_dict().items()}
                                        for name, net in weights.items()},
            "calibration": calibration, "options": cfg.backend_options, "seed": cfg.seed, "threads": cfg.threads,
            "engines": {name: engine.handed_over() for name, engine in _engines(weights).items()
                        if hasattr(engine, "handed_over")}}


def _engines(names) -> dict[str, object]:
    """The engines of the registered backends among ``names``, by engine name."""
    return {BACKENDS[n].engine.name: BACKENDS[n].engine for n in names if n in BACKENDS}


def prepare_again(spec: dict) -> dict:
    """Each backend of ``spec`` (``handed_over``'s keys) prepared in this process, by name."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    engines = _engines(spec["weights"])
    for name, state in spec.get("engines", {}).items():
        if name in engines:
            engines[name].take_over(state)
    prepared = {}
    for name, state in spec["weights"].items():
        if name not in BACKENDS:
            raise SystemExit(f"backend {name} is not registered in a fresh process (a backend added at run time "
                             "cannot be timed with --processes > 1 or served)")
        b = BACKENDS[name]
        b.configure(spec["options"])
        model = build_trainable(spec["model"], b, spec["options"], spec["seed"])
        model.load_state_dict(state)
        prepared[name] = b.engine.prepare(model, b, spec["options"], spec["calibration"])
    return prepared
