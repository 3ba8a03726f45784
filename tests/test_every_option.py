"""Every run option, set to a value other than its default, through the command line and through a
TOML file: each is read back from the configuration a run stores (meta.json's ``config``), so none is
accepted and then dropped. A new option without a value here fails the coverage check."""

import json
from dataclasses import asdict

import pytest

from bench.cli import build_parser
from bench.commands import _run_values
from bench.config.build import _value_of, build_config, config_from_dict, legal_keys
from bench.config.types import run_options

# key: (as the command line gives it, as TOML gives it, what the stored configuration holds)
SINGLE = {
    "models": ("mlp", "mlp", ("mlp",)),
    "backends": ("cpu-fp32,onnxruntime-cpu", ["cpu-fp32", "onnxruntime-cpu"], ("cpu-fp32", "onnxruntime-cpu")),
    "preset": ("full", "full", "full"),
    "seed": ("7", 7, 7),
    "seeds": ("3", 3, 3),
    "validation_images": ("2000", 2000, 2000),
    "epochs": ("4", 4, 4),
    "batch_size": ("64", 64, 64),
    "lr": ("0.02", 0.02, 0.02),
    "optimizer": ("sgd", "sgd", "sgd"),
    "schedule": ("constant", "constant", "constant"),
    "warmup_steps": ("3", 3, 3),
    "evals_per_epoch": ("5", 5, 5),
    "target_accuracy": ("0.95", 0.95, 0.95),
    "stop_at_target": (None, False, False),  # full's default is on: the flag cannot turn it off; TOML can
    "limit_train": ("3000", 3000, 3000),
    "limit_test": ("700", 700, 700),
    "normalization": ("minmax", "minmax", "minmax"),
    "dropout": ("on", True, True),
    "label_smoothing": ("0.05", 0.05, 0.05),
    "augment": ("shift", "shift", "shift"),
    "threads": ("1", 1, 1),
    "processes": ("3", 3, 3),
    "allocator": ("system", "system", "system"),
    "batch_sizes": ("2,8", [2, 8], (2, 8)),
    "rounds": ("9", 9, 9),
    "warmup_calls": ("4", 4, 4),
    "budget_s": ("0.3", 0.3, 0.3),
    "min_repeats": ("6", 6, 6),
    "max_repeats": ("900", 900, 900),
    "resolution_pct": ("2.5", 2.5, 2.5),
    "max_time_s": ("2", 2.0, 2.0),
    "breakdown": ("all", "all", "all"),
    "scenarios": ("server,offline", ["server", "offline"], ("server", "offline")),
    "scenario_seconds": ("0.25", 0.25, 0.25),
    "latency_bound_ms": ("12.5", 12.5, 12.5),
    "max_batch": ("16", 16, 16),
    "batch_timeout_us": ("250", 250, 250),
    "server_steps": ("5", 5, 5),
    "call_limit_s": ("7.5", 7.5, 7.5),
    "tf32": ("", True, True),
    "cudnn_benchmark": ("", True, True),
    "channels_last": (None, False, False),  # full's default is on
    "dynamics": ("", True, True),
    "dynamics_every": ("2", 2, 2),
    "grid": ("9", 9, 9),
    "subset": ("300", 300, 300),
    "out": ("elsewhere", "elsewhere", "elsewhere"),
    "data_dir": ("mnist-files", "mnist-files", "mnist-files"),
    "name": ("every-option", "every-option", "every-option"),
    "ort_opt_level": ("basic", "basic", "basic"),
    "ort_intra_threads": ("2", 2, 2),
    "ort_inter_threads": ("1", 1, 1),
    "ort_spinning": ("on", True, True),
    "profile_steps": ("2", 2, 2),
    "profile_wait": ("0", 0, 0),
    "profile_warmup": ("1", 1, 1),
    "record_shapes": ("", True, True),
    "profile_memory": ("", True, True),
    "with_stack": ("", True, True),
}
# torchrun's options: a data-parallel run takes neither --dynamics nor --processes, and several nodes
# take no --scaling; so two more configurations
TORCHRUN = {
    "launcher": ("torchrun", "torchrun", "torchrun"),
    "nproc_per_node": ("2", 2, 2),
    "scaling": ("1,2", [1, 2], (1, 2)),
    "scaling_batch": ("per-rank", "per-rank", "per-rank"),
    "dist_timeout_s": ("30", 30.0, 30.0),
}
NODES = {
    "launcher": ("torchrun", "torchrun", "torchrun"),
    "nnodes": ("2", 2, 2),
    "rdzv_endpoint": ("10.0.0.1:29500", "10.0.0.1:29500", "10.0.0.1:29500"),
}
CONFIGS = [SINGLE, TORCHRUN, {**NODES, "backends": ("cpu-fp32", "cpu-fp32", ("cpu-fp32",))}]


def _argv(values: dict) -> list[str]:
    argv = ["run"]
    for key, (cli, _, _) in values.items():
        if cli is None:
            continue
        argv += [f"--{key.replace('_', '-')}"] + ([cli] if cli != "" else [])
    return argv


def _toml(values: dict) -> str:
    return "".join(f"{key} = {json.dumps(toml)}\n" for key, (_, toml, _) in values.items())


def _stored(cfg):
    """The configuration as a run folder stores it and --resume, the workers and the ranks read it."""
    return config_from_dict(json.loads(json.dumps(asdict(cfg), default=str)))


def _expected(value):
    from pathlib import Path

    return Path(value) if isinstance(value, str) and value in ("elsewhere", "mnist-files") else value


def test_every_option_has_a_non_default_value_here():
    covered = set().union(*CONFIGS)
    assert covered == set(legal_keys()) - {"config"}, "an option without a non-default value in this test"
    defaults = {o.key: _value_of(build_config({}), o.key) for o in run_options()}
    for config in CONFIGS:
        for key, (_, _, stored) in config.items():
            assert _expected(stored) != defaults[key] or key in ("stop_at_target", "channels_last", "schedule",
                                                                   "normalization", "dropout"), key


@pytest.mark.parametrize("config", CONFIGS, ids=["single", "torchrun", "nodes"])
def test_every_option_is_read_back_from_the_stored_configuration(config, tmp_path, capsys):
    args = build_parser().parse_args(_argv(config))
    toml = tmp_path / "c.toml"
    toml.write_text(_toml(config))
    for source, cfg in (("command line", build_config(_run_values(args))), ("TOML", build_config({"config": toml}))):
        back = _stored(cfg)
        assert back == cfg, source
        for key, (cli, _, stored) in config.items():
            if cli is None and source == "command line":
                continue  # a flag only turns a switch on (see SINGLE)
            got = _value_of(back, key)
            assert got == _expected(stored), f"{key} through the {source}: {got!r}"
