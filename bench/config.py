"""Typed run configuration, built the same way from the CLI, a TOML file or Python.

``build_config(values)`` is the one entry point: ``values`` is a flat mapping whose keys are
the CLI option names (dashes or underscores). Unknown keys and bad values raise ``ConfigError``
naming the legal values.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bench import ConfigError
from bench.backends import AUTO, auto_backends, backend_names
from bench.engines.base import BackendOptions
from bench.history import check_name
from models import get_spec, model_names

MNIST_TRAIN_IMAGES = 60_000
MAX_LR = 10.0  # a learning rate above this cannot train these models to a meaningful figure
MAX_SEED = 2**32 - 1  # numpy's and the data order's seeds are 32-bit
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "onecycle")
NORMALIZATIONS = ("minmax", "standard")
PRESETS = ("quick", "full")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1  # maximum epochs; with stop_at_target training may end earlier
    batch_size: int = 128
    lr: float = 1e-3  # peak learning rate with schedule "onecycle"
    optimizer: str = "adam"  # adam | sgd (sgd uses momentum 0.9)
    schedule: str = "constant"  # constant | onecycle
    warmup_steps: int = 10  # first steps of training, timed apart from the steady state
    evals_per_epoch: int = 2  # test-set checks per epoch (curve points, time-to-accuracy)
    target_accuracy: float = 0.98  # for time_to_accuracy_s, in [0, 1]
    stop_at_target: bool = False  # end training at the first check reaching the target
    limit_train: int | None = None  # use the first N training samples
    limit_test: int | None = None  # use the first N test samples
    normalization: str = "minmax"  # minmax ([0, 1]) | standard (mean 0.1307, std 0.3081)
    dropout: bool = True  # off: every dropout layer keeps all units (runs that must repeat bit for bit)

    def __post_init__(self) -> None:
        _positive(self, "epochs", "batch_size", "evals_per_epoch")
        _positive(self, "limit_train", "limit_test", allow_none=True)
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (0 < self.lr <= MAX_LR):  # also refuses nan and inf
            raise ConfigError(f"lr must be a number in (0, {MAX_LR:g}], got {self.lr}")
        images = min(self.limit_train or MNIST_TRAIN_IMAGES, MNIST_TRAIN_IMAGES)
        if self.batch_size > images:
            raise ConfigError(f"batch_size {self.batch_size} is larger than the training set ({images:,} images"
                              f"{' with limit_train' if self.limit_train else ''}): no full batch to time")
        if not 0 <= self.target_accuracy <= 1:
            raise ConfigError(f"target_accuracy must be in [0, 1], got {self.target_accuracy}")
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("normalization", self.normalization, NORMALIZATIONS)


@dataclass(frozen=True)
class InferConfig:
    batch_sizes: tuple[int, ...] = (1, 32, 256, 1024)
    rounds: int = 12  # interleaved rounds per batch size at least; every backend is timed once per round
    warmup_calls: int = 2  # untimed calls at the start of each round's block (the cold first call is apart)
    budget_s: float = 0.24  # timed seconds per cell over its first `rounds` rounds (a block: budget_s / rounds)
    min_repeats: int = 12  # timed calls per cell at least (spread over the rounds)
    max_repeats: int = 4000  # timed calls per cell over its first `rounds` rounds at most
    resolution_pct: float = 5.0  # add rounds to a pair until its interval is within +-this % (0: never add)
    max_time_s: float = 4.0  # seconds per batch size that the added rounds may take at most

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise ConfigError("batch_sizes must name at least one batch size")
        for bs in self.batch_sizes:
            if not isinstance(bs, int) or bs <= 0:
                raise ConfigError(f"batch_sizes must be positive integers, got {bs!r}")
        _positive(self, "rounds", "min_repeats", "max_repeats")
        if self.warmup_calls < 0:
            raise ConfigError(f"warmup_calls must be >= 0, got {self.warmup_calls}")
        if not self.budget_s > 0:
            raise ConfigError(f"budget_s must be > 0, got {self.budget_s}")
        if not 0 <= self.resolution_pct < 100:
            raise ConfigError(f"resolution_pct must be a percentage in [0, 100), got {self.resolution_pct}")
        if not self.max_time_s >= 0:
            raise ConfigError(f"max_time_s must be >= 0 seconds, got {self.max_time_s}")


LAUNCHERS = ("none", "torchrun")
SCALING_BATCH = ("global", "per-rank")


@dataclass(frozen=True)
class DistConfig:
    """Data-parallel training launched through torchrun (``launcher = "torchrun"``)."""

    launcher: str = "none"  # none: this process; torchrun: DistributedDataParallel over torchrun's ranks
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT of the c10d rendezvous (needed with nnodes > 1)
    scaling: tuple[int, ...] = ()  # world sizes measured one after another (one node); empty: nnodes x nproc
    scaling_batch: str = "global"  # global: the global batch stays the training batch size; per-rank: each rank's
    dist_timeout_s: float = 60.0  # bound on a collective and on the rendezvous: a dead or missing rank ends the run

    def __post_init__(self) -> None:
        _one_of("launcher", self.launcher, LAUNCHERS)
        _one_of("scaling_batch", self.scaling_batch, SCALING_BATCH)
        _positive(self, "nproc_per_node", "nnodes")
        if not self.dist_timeout_s > 0:
            raise ConfigError(f"dist_timeout_s must be > 0, got {self.dist_timeout_s}")
        if any(n < 1 for n in self.scaling):
            raise ConfigError(f"scaling must list world sizes >= 1, got {','.join(map(str, self.scaling))}")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"rdzv_endpoint must be HOST:PORT with a port in 1-65535, got {self.rdzv_endpoint!r}")
        if self.launcher == "none" and (self.nproc_per_node > 1 or self.nnodes > 1 or self.scaling):
            raise ConfigError("nproc_per_node, nnodes and scaling need launcher = torchrun (--launcher torchrun)")
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ConfigError("nnodes > 1 needs rdzv_endpoint HOST:PORT (the c10d rendezvous every node joins)")
        if self.nnodes > 1 and self.scaling:
            raise ConfigError("scaling runs world sizes on one node; give nnodes 1 (or no scaling)")

    @property
    def world_sizes(self) -> tuple[int, ...]:
        return self.scaling or (self.nnodes * self.nproc_per_node,)

    @property
    def enabled(self) -> bool:
        return self.launcher == "torchrun"


@dataclass(frozen=True)
class RunConfig:
    models: tuple[str, ...] = ("mlp", "cnn")  # build_config's default: every registered model
    backends: tuple[str, ...] = ("cpu-fp32", "cpu-bf16")  # build_config's default: "auto"
    preset: str = "quick"  # quick | full
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    processes: int = 1  # inference rounds spread over this many fresh worker processes (1: this process)
    out: Path = Path("results")
    data_dir: Path | None = None
    dynamics: bool = False
    dynamics_every: int = 1  # with dynamics: record per-layer statistics every K steps
    grid: int = 15  # with dynamics: surface points per axis (>= 2)
    subset: int = 500  # with dynamics: first N training images the landscape is evaluated on
    name: str | None = None  # a name for the run (its folder ends with it; found by it in the results index)
    train: dict[str, TrainConfig] = field(default_factory=dict)  # per model
    infer: InferConfig = field(default_factory=InferConfig)
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    distributed: DistConfig = field(default_factory=DistConfig)

    def train_for(self, model: str) -> TrainConfig:
        return self.train[model]


# Per-preset defaults; each model's recipe (its registry entry) goes over them.
_PRESET_TRAIN = {
    # quick: one epoch over the first 12,000 training images (fits ~3 minutes on 2 cores,
    # where bf16 autocast is emulated in software on CPUs without native bf16).
    "quick": {"epochs": 1, "evals_per_epoch": 2, "stop_at_target": False, "limit_train": 12000},
    "full": {"stop_at_target": True, "evals_per_epoch": 4},
}
# Many short rounds (20-30 ms blocks) rather than a few long ones: drift at the 0.1-1 s scale then
# hits both members of a pair; the rounds beyond the first go to the pairs still wider than the
# resolution, up to max_time_s per batch size.
_PRESET_INFER = {"quick": {"budget_s": 0.24, "rounds": 12, "warmup_calls": 1, "min_repeats": 12, "max_time_s": 4.0},
                 "full": {"budget_s": 0.6, "rounds": 20, "warmup_calls": 2, "min_repeats": 20, "max_time_s": 15.0}}

_TRAIN_KEYS = {f.name for f in fields(TrainConfig)}
_INFER_KEYS = {f.name for f in fields(InferConfig)}
_OPTION_KEYS = {f.name for f in fields(BackendOptions)}
_DIST_KEYS = {f.name for f in fields(DistConfig)}
_RUN_KEYS = {"models", "backends", "preset", "seed", "threads", "processes", "out", "data_dir", "dynamics", "name",
             "dynamics_every", "grid", "subset"}
LEGAL_KEYS = sorted(_TRAIN_KEYS | _INFER_KEYS | _OPTION_KEYS | _DIST_KEYS | _RUN_KEYS | {"config"})


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a .toml file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (TOML files are UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    if "config" in values:
        raise ConfigError(f"config file {path} names another config file ('config' key); config files do not nest")
    return values


def build_config(values: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from flat key/value pairs (CLI names or TOML keys)."""
    values = {k.replace("-", "_"): v for k, v in values.items() if v is not None}
    if "config" in values:
        file_values = {k.replace("-", "_"): v for k, v in load_toml(Path(values.pop("config"))).items()}
        values = {**file_values, **values}
    if "profile" in values:  # the key's earlier name; "profile" now means torch.profiler only
        print("warning: 'profile' is renamed 'preset' (--preset quick|full)", file=sys.stderr)
        values.setdefault("preset", values.pop("profile"))
    unknown = sorted(set(values) - set(LEGAL_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; legal keys: {', '.join(LEGAL_KEYS)}")

    preset = values.get("preset", "quick")
    _one_of("preset", preset, PRESETS)
    models = _name_list("models", values.get("models", model_names()), model_names())
    backends_value = values.get("backends", AUTO)
    if backends_value == AUTO or _split(backends_value) == [AUTO]:
        backends = auto_backends()
    else:
        backends = _name_list("backends", backends_value, backend_names() + [AUTO])
        if AUTO in backends:
            raise ConfigError(f"'{AUTO}' stands alone in backends (it picks every available backend); "
                              f"got {', '.join(backends)}")
    seed = _int("seed", values.get("seed", 0), minimum=0)
    if seed > MAX_SEED:
        raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    processes = _int("processes", values.get("processes", 1), minimum=1)
    threads = values.get("threads")
    if threads is not None:
        threads = _int("threads", threads, minimum=1)

    train_given = {k: values[k] for k in _TRAIN_KEYS if k in values}
    train = {}
    for m in models:
        spec = get_spec(m)
        merged = {"target_accuracy": spec.target_accuracy, **_PRESET_TRAIN[preset], **spec.recipes.get(preset, {})}
        merged.update(train_given)
        train[m] = _construct(TrainConfig, merged)

    infer_values = {**_PRESET_INFER[preset], **{k: values[k] for k in _INFER_KEYS if k in values}}
    if "batch_sizes" in infer_values:
        sizes = _split(infer_values["batch_sizes"])
        infer_values["batch_sizes"] = tuple(_int("batch_sizes", b, minimum=1) for b in sizes)
    infer = _construct(InferConfig, infer_values)
    options = _construct(BackendOptions, {k: values[k] for k in _OPTION_KEYS if k in values})
    dist_values = {k: values[k] for k in _DIST_KEYS if k in values}
    if "scaling" in dist_values:
        dist_values["scaling"] = tuple(_int("scaling", n, minimum=1) for n in _split(dist_values["scaling"]))
    distributed = _construct(DistConfig, dist_values)
    if distributed.enabled:
        backends = _trainers_only(backends, explicit=_split(backends_value) != [AUTO])
        for key, asked in (("dynamics", _bool("dynamics", values.get("dynamics", False))),
                           ("processes", _int("processes", values.get("processes", 1)) != 1)):
            if asked:
                raise ConfigError(f"{key} applies to single-process runs; a torchrun run measures data-parallel "
                                  "training only (leave it out, or run without --launcher torchrun)")

    data_dir = values.get("data_dir")
    for key in ("out", "data_dir"):
        if key in values and not isinstance(values[key], (str, Path)):
            raise ConfigError(f"{key} must be a folder path (a string), got {values[key]!r}")
    return RunConfig(
        models=models,
        backends=backends,
        preset=preset,
        seed=seed,
        threads=threads,
        processes=processes,
        out=Path(values.get("out", "results")),
        data_dir=Path(data_dir) if data_dir else None,
        dynamics=_bool("dynamics", values.get("dynamics", False)),
        dynamics_every=_int("dynamics_every", values.get("dynamics_every", 1), minimum=1),
        grid=_int("grid", values.get("grid", RunConfig.grid), minimum=2),
        subset=_int("subset", values.get("subset", RunConfig.subset), minimum=1),
        name=check_name(str(values["name"])) if values.get("name") is not None else None,
        train=train,
        infer=infer,
        backend_options=options,
        distributed=distributed,
    )


def _trainers_only(backends: tuple[str, ...], explicit: bool) -> tuple[str, ...]:
    """Data-parallel runs train: auto keeps its training backends; a named one that does not train
    is refused."""
    from bench.backends import BACKENDS

    idle = [b for b in backends if not BACKENDS[b].trains]
    if idle and explicit:
        legal = ", ".join(n for n, b in BACKENDS.items() if b.trains)
        raise ConfigError(f"a torchrun run trains data-parallel, and {', '.join(idle)} does not train; legal values: "
                          f"{legal}")
    return tuple(b for b in backends if BACKENDS[b].trains)


def config_from_dict(d: dict) -> RunConfig:
    """The RunConfig stored in a run folder's meta.json (``asdict``), rebuilt and validated again."""
    try:
        return RunConfig(
            **{k: v for k, v in d.items() if k not in ("train", "infer", "backend_options", "out", "data_dir",
                                                      "models", "backends", "distributed")},
            models=tuple(d["models"]), backends=tuple(d["backends"]), out=Path(d["out"]),
            data_dir=Path(d["data_dir"]) if d.get("data_dir") else None,
            train={m: TrainConfig(**t) for m, t in d["train"].items()},
            infer=InferConfig(**{**d["infer"], "batch_sizes": tuple(d["infer"]["batch_sizes"])}),
            backend_options=BackendOptions(**d["backend_options"]),
            distributed=DistConfig(**{**d.get("distributed", {}),
                                      "scaling": tuple(d.get("distributed", {}).get("scaling", ()))}))
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"the stored configuration cannot be read ({type(e).__name__}: {e})") from None


def resume_config(run_dir: Path, given: dict[str, Any]) -> RunConfig:
    """The configuration stored in ``run_dir``'s meta.json. An option also given now must agree with
    it: a conflicting one is an error naming it (the stored run cannot be continued differently)."""
    import json

    meta_path = Path(run_dir) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        stored = config_from_dict(meta["config"])
    except FileNotFoundError:
        raise ConfigError(f"--resume {run_dir}: not a results folder (no meta.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--resume {run_dir}: its meta.json cannot be read ({type(e).__name__}: {e})") from None
    given = {k.replace("-", "_"): v for k, v in given.items()}
    if not given:
        return stored
    now = build_config({"models": ",".join(stored.models), "backends": ",".join(stored.backends),
                        "preset": stored.preset, **given})
    conflicts = [k for k in given if _field(now, k) != _field(stored, k)]
    if conflicts:
        raise ConfigError("--resume continues the run with its stored configuration; these options conflict "
                          "with it: " + ", ".join(f"--{k.replace('_', '-')} (stored: {_field(stored, k)!r})"
                                                  for k in conflicts))
    return stored


def _field(cfg: RunConfig, key: str) -> Any:
    if key in _TRAIN_KEYS:
        return tuple(getattr(t, key) for t in cfg.train.values())
    if key in _INFER_KEYS:
        return getattr(cfg.infer, key)
    if key in _OPTION_KEYS:
        return getattr(cfg.backend_options, key)
    return getattr(cfg, key, None)


def with_train(cfg: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``cfg`` with the same change applied to every model's TrainConfig."""
    return replace(cfg, train={m: replace(t, **changes) for m, t in cfg.train.items()})


def _construct(cls, values: dict[str, Any]):
    typed = {}
    hints = {f.name: f.type for f in fields(cls)}
    for k, v in values.items():
        hint = str(hints[k])
        if hint.startswith("int"):
            v = _int(k, v)
        elif hint.startswith("float"):
            v = _float(k, v)
        elif hint.startswith("bool"):
            v = _bool(k, v)
        typed[k] = v
    return cls(**typed)


def _split(value: Any) -> list:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _name_list(key: str, value: Any, legal: list[str]) -> tuple[str, ...]:
    names = [str(n) for n in _split(value)]
    if not names:
        raise ConfigError(f"{key} must name at least one of: {', '.join(legal)}")
    bad = [n for n in names if n not in legal]
    if bad:
        raise ConfigError(f"unknown {key[:-1]} {', '.join(map(repr, bad))}; legal values: {', '.join(legal)}")
    return tuple(dict.fromkeys(names))


def _int(key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {n}")
    return n


def _float(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _positive(obj: Any, *names: str, allow_none: bool = False) -> None:
    for name in names:
        v = getattr(obj, name)
        if v is None and allow_none:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def _one_of(key: str, value: Any, legal: tuple[str, ...]) -> None:
    if value not in legal:
        raise ConfigError(f"{key} must be one of {', '.join(legal)}; got {value!r}")


def default_texts() -> dict[str, str]:
    """Each run option's default as --help states it: one value, or per preset and model where the
    presets and the models' recipes differ."""
    from dataclasses import asdict

    presets = {p: build_config({"preset": p, "backends": "cpu-fp32"}) for p in PRESETS}
    out: dict[str, str] = {}
    for key in _TRAIN_KEYS:
        per = {p: {m: getattr(c.train_for(m), key) for m in c.models} for p, c in presets.items()}
        values = {v for d in per.values() for v in d.values()}
        if len(values) == 1:
            out[key] = _shown(values.pop())
        elif all(d == per["quick"] for d in per.values()):  # per model, the same in every preset
            out[key] = ", ".join(f"{m} {_shown(v)}" for m, v in per["quick"].items())
        else:
            out[key] = "; ".join(f"{p}: " + (_shown(next(iter(d.values()))) if len(set(d.values())) == 1 else
                                            ", ".join(f"{m} {_shown(v)}" for m, v in d.items()))
                                 for p, d in per.items())
    for key in _INFER_KEYS:
        values = {p: getattr(c.infer, key) for p, c in presets.items()}
        out[key] = _shown(values["quick"]) if len(set(values.values())) == 1 else \
            "; ".join(f"{p}: {_shown(v)}" for p, v in values.items())
    for key, value in {**asdict(BackendOptions()), **asdict(DistConfig())}.items():
        out[key] = _shown(value)
    run = RunConfig()
    out.update({k: _shown(getattr(run, k)) for k in _RUN_KEYS if k not in ("models", "backends")},
               models=",".join(model_names()), backends=AUTO, preset="quick")
    return out


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
