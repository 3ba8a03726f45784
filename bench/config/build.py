"""Typed run configuration, built the same way from the CLI, a TOML file or Python.

``build_config(values)`` is the one entry point: ``values`` is a flat mapping whose keys are
the CLI option names (dashes or underscores). Unknown keys and bad values raise ``ConfigError``
naming the legal values.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from bench import ConfigError
from bench.config.types import (
    AUTO,
    PRESETS,
    SCENARIOS,
    DistConfig,
    DynamicsConfig,
    InferConfig,
    ProfileOptions,
    RunConfig,
    ServeConfig,
    TrainConfig,
    engine_option_classes,
    field_default,
    phase_option_classes,
)
from bench.engines.base import BackendOptions
from bench.plumbing.values import name_list, read_fields, split, typed

__all__ = ["AUTO", "PRESETS", "DistConfig", "DynamicsConfig", "InferConfig", "ProfileOptions", "RunConfig",
           "TrainConfig", "build_config", "config_from_dict", "resume_config", "with_train"]

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

# full: NHWC for the models it applies to (the CNN), part of its fast recipe (benchmarks/recipe_search.py)
_PRESET_OPTIONS = {"quick": {}, "full": {"channels_last": True}}

_TRAIN_KEYS = {f.name for f in fields(TrainConfig)}
_INFER_KEYS = {f.name for f in fields(InferConfig)}
_OPTION_KEYS = {f.name for f in fields(BackendOptions) if "help" in f.metadata}  # every engine's
_DIST_KEYS = {f.name for f in fields(DistConfig)}
_SERVE_KEYS = {f.name for f in fields(ServeConfig)}
_RUN_KEYS = {f.name for f in fields(RunConfig) if "help" in f.metadata}


def _engine_keys() -> dict[str, type]:
    """Each engine's own option (``Engine.options``) by key: the class that declares it."""
    return {f.name: cls for cls in engine_option_classes() for f in fields(cls) if "help" in f.metadata}


def _phase_keys() -> dict[str, type]:
    """Each registered phase's own option (``Phase.options``) by key: the class that declares it."""
    return {f.name: cls for cls in phase_option_classes() for f in fields(cls) if "help" in f.metadata}


def legal_keys() -> list[str]:
    """Every configuration key (TOML), plugins' engines' and phases' options included."""
    return sorted(_TRAIN_KEYS | _INFER_KEYS | _OPTION_KEYS | _DIST_KEYS | _SERVE_KEYS | _RUN_KEYS | {"config"}
                  | set(_engine_keys()) | set(_phase_keys()))


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


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The values given, under their TOML names, a config file's under the command line's; an
    unknown key is refused with the legal ones."""
    values = {k.replace("-", "_"): v for k, v in values.items() if v is not None}
    if "config" in values:
        file_values = {k.replace("-", "_"): v for k, v in load_toml(Path(values.pop("config"))).items()}
        values = {**file_values, **values}
    if "profile" in values:  # the key's earlier name; "profile" now means torch.profiler only
        print("warning: 'profile' is renamed 'preset' (--preset quick|full)", file=sys.stderr)
        values.setdefault("preset", values.pop("profile"))
    legal = legal_keys()
    unknown = sorted(set(values) - set(legal))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; legal keys: {', '.join(legal)}")
    return values


def build_config(values: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from flat key/value pairs (CLI names or TOML keys): each value
    read by its field's annotation (``bench.plumbing.values.read_value``), each part then checks
    itself; the presets' and the models' recipes go under the values given."""
    values = _given(values)
    preset = values.get("preset", field_default(RunConfig, "preset"))
    one_of_presets(preset)
    models = name_list("models", values.get("models", field_default(RunConfig, "models")), list(_all_models()))
    backends, explicit = _backends(values.get("backends", AUTO))
    own = read_fields(RunConfig, {k: values[k] for k in _RUN_KEYS - {"models", "backends"} if k in values})
    distributed = typed(DistConfig, {k: values[k] for k in _DIST_KEYS if k in values})
    if distributed.enabled:
        backends = _trainers_only(backends, explicit)
        for key, asked in (("dynamics", own.get("dynamics")), ("processes", own.get("processes", 1) != 1)):
            if asked:
                raise ConfigError(f"{key} applies to single-process runs; a torchrun run measures data-parallel "
                                  "training only (leave it out, or run without --launcher torchrun)")
        own["processes"] = 1
    return RunConfig(
        **own, models=models, backends=backends,
        train={m: _train_config(m, preset, values) for m in models},
        infer=typed(InferConfig, {**_PRESET_INFER[preset], **{k: values[k] for k in _INFER_KEYS if k in values}}),
        backend_options=_backend_options(values, preset, backends), distributed=distributed,
        serve=_serve_config(values), phase_options=_phase_options(values))


def _phase_options(values: dict[str, Any]) -> dict[str, Any]:
    """Each registered phase's option set, from the values given (its defaults for the rest)."""
    return {cls.key: typed(cls, {f.name: values[f.name] for f in fields(cls) if f.name in values})
            for cls in phase_option_classes()}


def _backend_options(values: dict[str, Any], preset: str, backends: tuple[str, ...]) -> BackendOptions:
    """The switches shared by every backend, and each engine's own options. An engine option given
    for a run none of whose backends runs that engine is ignored with a warning naming those that do."""
    from bench.engines.backends import engine_option_sets

    shared = typed(BackendOptions, {**_PRESET_OPTIONS[preset], **{k: values[k] for k in _OPTION_KEYS if k in values}})
    sets = []
    for cls, applies in engine_option_sets().items():
        given = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        sets.append(typed(cls, given))
        if given and not set(applies) & set(backends):
            print(f"warning: {', '.join(given)} applies to {', '.join(applies)}, none of which this run has; "
                  "ignored", file=sys.stderr)
    return shared.with_engine(*sets)


def _serve_config(values: dict[str, Any]) -> ServeConfig:
    given = {k: values[k] for k in _SERVE_KEYS if k in values}
    if "scenarios" in given:
        names = [str(n) for n in split(given["scenarios"])]
        given["scenarios"] = SCENARIOS if names == ["all"] else tuple(dict.fromkeys(
            n for n in names if n != "none"))
    return typed(ServeConfig, given)


def one_of_presets(preset: Any) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")


def _all_models() -> tuple[str, ...]:
    from models import model_names

    return tuple(model_names())


def _backends(value: Any) -> tuple[tuple[str, ...], bool]:
    """The backends a value names (auto: every backend available here), and whether they were named."""
    from bench.engines.backends import auto_backends, backend_names

    if value == AUTO or split(value) == [AUTO]:
        return auto_backends(), False
    backends = name_list("backends", value, backend_names() + [AUTO])
    if AUTO in backends:
        raise ConfigError(f"'{AUTO}' stands alone in backends (it picks every available backend); "
                          f"got {', '.join(backends)}")
    return backends, True


def _train_config(model: str, preset: str, values: dict[str, Any]) -> TrainConfig:
    """A model's recipe: TrainConfig's defaults, under the preset's, under the model's own (its
    registry entry), under the values given."""
    from models import get_spec

    spec = get_spec(model)
    merged = {**_PRESET_TRAIN[preset], **({"target_accuracy": spec.target_accuracy} if spec.target_accuracy else {}),
              **spec.recipes.get(preset, {}), **{k: values[k] for k in _TRAIN_KEYS if k in values}}
    return typed(TrainConfig, merged)


def _trainers_only(backends: tuple[str, ...], explicit: bool) -> tuple[str, ...]:
    """Data-parallel runs train: auto keeps its training backends; a named one that does not train
    is refused."""
    from bench.engines.backends import BACKENDS

    idle = [b for b in backends if not BACKENDS[b].trains]
    if idle and explicit:
        legal = ", ".join(n for n, b in BACKENDS.items() if b.trains)
        raise ConfigError(f"a torchrun run trains data-parallel, and {', '.join(idle)} does not train; legal values: "
                          f"{legal}")
    return tuple(b for b in backends if BACKENDS[b].trains)


def config_from_dict(d: dict) -> RunConfig:
    """The RunConfig stored in a run folder's meta.json (``asdict``), rebuilt and validated again."""
    parts = ("train", "infer", "backend_options", "serve", "distributed", "phase_options")
    try:
        return RunConfig(
            **read_fields(RunConfig, {k: v for k, v in d.items() if k not in parts}),
            train={m: typed(TrainConfig, t) for m, t in d["train"].items()}, infer=typed(InferConfig, d["infer"]),
            backend_options=_stored_backend_options(d["backend_options"]),
            serve=typed(ServeConfig, d.get("serve", {})), distributed=typed(DistConfig, d.get("distributed", {})),
            phase_options=_stored_phase_options(d.get("phase_options") or {}))
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"the stored configuration cannot be read ({type(e).__name__}: {e})") from None


def _stored_backend_options(d: dict) -> BackendOptions:
    """BackendOptions as meta.json stores them: the shared switches and each engine's set (runs made
    before engines declared their own options stored those beside the shared ones)."""
    shared = {k: v for k, v in d.items() if k in _OPTION_KEYS}
    stored = d.get("engine_options") or {}
    sets = []
    for cls in engine_option_classes():
        own = {f.name for f in fields(cls)}
        sets.append(cls(**{**{k: v for k, v in d.items() if k in own}, **(stored.get(cls.key) or {})}))
    return BackendOptions(**shared).with_engine(*sets)


def _stored_phase_options(d: dict) -> dict[str, Any]:
    """Phase option sets as meta.json stores them: typed for each phase registered here, kept as
    read for one that is not (a report of a plugin's run, made without the plugin)."""
    known = {cls.key: cls for cls in phase_option_classes()}
    return {key: typed(known[key], values) if key in known else values for key, values in d.items()}


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
    owner = _engine_keys().get(key)
    if owner is not None:
        return getattr(cfg.backend_options.of(owner), key)
    owner = _phase_keys().get(key)
    if owner is not None:
        return getattr(cfg.options_of(owner), key)
    if key in _DIST_KEYS:
        return getattr(cfg.distributed, key)
    if key in _SERVE_KEYS:
        return getattr(cfg.serve, key)
    return getattr(cfg, key, None)


def with_train(cfg: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``cfg`` with the same change applied to every model's TrainConfig."""
    return replace(cfg, train={m: replace(t, **changes) for m, t in cfg.train.items()})


def default_texts() -> dict[str, str]:
    """Each run option's default as --help states it: one value, or per preset and model where the
    presets and the models' recipes differ."""
    from dataclasses import asdict

    from bench.engines.backends import REFERENCE

    presets = {p: build_config({"preset": p, "backends": REFERENCE}) for p in PRESETS}
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
    for keys in (_INFER_KEYS, _OPTION_KEYS, set(_engine_keys()), set(_phase_keys())):
        for key in keys:
            values = {p: _field(c, key) for p, c in presets.items()}
            out[key] = _shown(values["quick"]) if len(set(values.values())) == 1 else \
                "; ".join(f"{p}: {_shown(v)}" for p, v in values.items())
    for key, value in {**asdict(DistConfig()), **asdict(ServeConfig())}.items():
        out[key] = _shown(value)
    out.update({k: _shown(field_default(RunConfig, k)) for k in _RUN_KEYS if k != "backends"}, backends=AUTO)
    from models import get_spec

    out["latency_bound_ms"] = ", ".join(f"{m} {_shown(get_spec(m).latency_bound_ms)}" for m in _all_models())
    return out


def defaults_toml() -> str:
    """A TOML file of every run option at its default, as ``--config`` reads it (options whose
    default differs per preset or model are comments naming those defaults)."""
    import json

    texts, preset = default_texts(), field_default(RunConfig, "preset")
    from bench.engines.backends import REFERENCE

    quick = build_config({"preset": preset, "backends": REFERENCE})
    lines = [f"# mnist-bench run options at their defaults (preset {preset}); give any of them to --config"]
    for key in legal_keys():
        if key == "config":
            continue
        value = _value_of(quick, key)
        if key == "backends":
            value = AUTO
        single = value not in (None, ()) and _shown(value) == texts[key]
        if single:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else \
                str(value) if isinstance(value, Path) else value
            lines.append(f"{key} = {json.dumps(shown)}" if not isinstance(shown, bool) else
                         f"{key} = {'true' if shown else 'false'}")
        else:
            lines.append(f"# {key}: {texts[key]}")
    return "\n".join(lines) + "\n"


def _value_of(cfg: RunConfig, key: str) -> Any:
    values = _field(cfg, key)
    if key in _TRAIN_KEYS:
        return values[0] if len(set(values)) == 1 else None
    return values


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
