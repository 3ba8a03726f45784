import pytest

from bench.config.build import ConfigError, build_config


def test_defaults_quick():
    cfg = build_config({})
    from bench.engines.backends import auto_backends

    assert cfg.models == ("mlp", "cnn") and cfg.backends == auto_backends()
    assert cfg.train_for("mlp").target_accuracy == 0.98 and cfg.train_for("cnn").target_accuracy == 0.99
    assert cfg.train_for("cnn").schedule == "onecycle"


def test_cli_values_override_preset_and_recipe():
    cfg = build_config({"preset": "full", "epochs": "2", "batch-size": "64", "schedule": "constant"})
    for m in ("mlp", "cnn"):
        t = cfg.train_for(m)
        assert (t.epochs, t.batch_size, t.schedule, t.stop_at_target) == (2, 64, "constant", True)


@pytest.mark.parametrize("values, message", [
    ({"models": "mlp,resnet"}, "unknown model 'resnet'; legal values: mlp, cnn"),
    ({"backends": "tpu"}, "unknown backend 'tpu'; legal values: cpu-fp32"),
    ({"backends": "auto,cpu-fp32"}, "'auto' stands alone in backends"),
    ({"epochs": "0"}, "epochs must be a positive integer"),
    ({"batch_size": "-3"}, "batch_size must be a positive integer"),
    ({"threads": "0"}, "threads must be >= 1"),
    ({"limit_train": "0"}, "limit_train must be a positive integer"),
    ({"epochs": "two"}, "epochs must be an integer"),
    ({"lr": "0"}, "lr must be a number in (0, 10]"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd"),
    ({"batch_sizes": "1,0"}, "batch_sizes must be >= 1"),
    ({"preset": "huge"}, "preset must be one of quick, full"),
    ({"colour": "red"}, "unknown config key"),
    ({"dynamics_every": "0"}, "dynamics_every must be >= 1"),
    ({"label_smoothing": "1"}, "label_smoothing must be in .0, 1., got 1.0"),
    ({"augment": "flip"}, "augment must be one of none, shift; got 'flip'"),
])
def test_bad_values_name_the_legal_ones(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config(values)


def test_the_full_preset_is_the_searched_recipe_and_options_still_win():
    from models import get_spec

    full = build_config({"preset": "full", "models": "cnn"})
    assert full.backend_options.channels_last and not build_config({"models": "cnn"}).backend_options.channels_last
    t = full.train_for("cnn")
    assert {k: getattr(t, k) for k in get_spec("cnn").recipes["full"]} == get_spec("cnn").recipes["full"]
    assert build_config({"preset": "full", "label_smoothing": "0", "augment": "shift"}).train_for("cnn").augment \
        == "shift"
    assert build_config({"preset": "full", "label_smoothing": "0"}).train_for("mlp").label_smoothing == 0.0


def test_the_full_recipes_are_the_recipe_searchs_winners():
    """The full preset's recipes are what benchmarks/recipe_search.py measured as winners: the test
    is of the two agreeing, so it reads the benchmark script itself (from the checkout; the wheel
    leaves benchmarks/ out, and the suite runs from a checkout)."""
    from benchmarks.recipe_search import WINNERS, _settings

    for model, name in WINNERS.items():
        backend, fields, channels_last = _settings(model, name)
        cfg = build_config({"preset": "full", "models": model})
        t = cfg.train_for(model)
        assert {k: getattr(t, k) for k in fields} == fields
        assert cfg.backend_options.channels_last or not channels_last
        assert backend in cfg.backends


def test_toml_file_and_cli_precedence(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('models = ["mlp"]\nepochs = 3\nbatch_sizes = [1, 8]\nlr = 0.01\n')
    cfg = build_config({"config": str(f), "epochs": "5"})
    assert cfg.models == ("mlp",) and cfg.train_for("mlp").epochs == 5 and cfg.train_for("mlp").lr == 0.01
    assert cfg.infer.batch_sizes == (1, 8)


def test_toml_unknown_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("epocs = 3\n")
    with pytest.raises(ConfigError, match="unknown config key.*epocs.*legal keys"):
        build_config({"config": str(f)})


def test_bad_toml(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config({"config": str(f)})


def _auto_without(monkeypatch, *modules):
    """auto's picks as if ``modules`` were not installed (probes run again, not from the cache)."""
    import sys

    from bench.engines import backends

    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError, find_spec raises ValueError
    monkeypatch.setattr(backends, "_PROBED", {})
    return backends.auto_backends(), {b.name: why for b, _, why in backends.auto_choices()}


def test_auto_picks_one_backend_per_engine_family_and_precision(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    picked, why = _auto_without(monkeypatch)
    assert picked == ("cpu-fp32", "cpu-bf16", "cpu-fp32-compile", "onnxruntime-cpu", "onnxruntime-int8-static")
    assert "same engine and precision as onnxruntime-int8-static" in why["onnxruntime-int8-dynamic"]
    assert "CUDA" in why["cuda-fp32"]
    assert build_config({"backends": "auto"}).backends == picked


def test_auto_without_onnxruntime_keeps_the_pytorch_backends(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    picked, why = _auto_without(monkeypatch, "onnxruntime", "onnxruntime.quantization")
    assert picked == ("cpu-fp32", "cpu-bf16", "cpu-fp32-compile")
    assert "onnxruntime" in why["onnxruntime-cpu"]


def test_auto_on_a_gpu_machine_takes_the_cuda_rows(monkeypatch):
    """With CUDA (bf16-capable) and triton present, auto takes the CUDA row of each engine and
    precision, keeps cpu-fp32 as the reference, and ONNX Runtime's CPU row where its CUDA provider
    is missing."""
    import importlib.util

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "triton"
                        else real_find_spec(name, *a))
    picked, why = _auto_without(monkeypatch)
    assert picked == ("cpu-fp32", "cuda-fp32", "cuda-amp-fp16", "cuda-amp-bf16", "cuda-fp32-compile",
                      "cuda-amp-bf16-compile", "onnxruntime-cpu", "onnxruntime-int8-static")
    assert why["cpu-fp32"] == "the reference every ratio is taken against"
    assert "same engine and precision as cuda-amp-bf16" in why["cpu-bf16"]


@pytest.mark.parametrize("values, message", [
    ({"launcher": "torchrun", "dynamics": True}, "dynamics applies to single-process runs"),
    ({"launcher": "torchrun", "processes": "2"}, "processes applies to single-process runs"),
    ({"launcher": "torchrun", "scaling": "1,0"}, "scaling must be >= 1"),
    ({"launcher": "torchrun", "dist_timeout_s": "0"}, "dist_timeout_s must be > 0"),
    ({"launcher": "torchrun", "scaling_batch": "half"}, "scaling_batch must be one of global, per-rank"),
    ({"launcher": "torchrun", "nnodes": "2", "rdzv_endpoint": "h:1", "scaling": "1,2"}, "scaling runs world sizes on"),
])
def test_distributed_settings_refused_up_front(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_each_default_is_declared_once_and_help_and_toml_agree(capsys):
    """The run options, their --help defaults and the TOML of 'mnist-bench defaults' all come from
    the typed configuration's fields: every field is an option, every option states the default
    the configuration computes, and the TOML holds those values and builds the same configuration."""
    import tomllib

    from bench.cli import build_parser, main
    from bench.config.build import _shown, default_texts, legal_keys

    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    helps = {a.dest: a.help for a in run._actions if a.help}
    texts = default_texts()
    assert set(legal_keys()) - {"config"} <= set(helps)
    for key, text in texts.items():
        assert helps[key].endswith(f"(default: {text})".replace("%", "%%")), (key, helps[key])
    assert main(["defaults"]) == 0
    toml = tomllib.loads(capsys.readouterr().out)
    assert len(toml) >= 30
    for key, value in toml.items():
        shown = _shown(value) if not isinstance(value, str) else value
        assert shown == texts[key] or (isinstance(value, float) and float(texts[key]) == value), key
    given = {k: v for k, v in toml.items() if k != "backends"}
    assert build_config({**given, "backends": "cpu-fp32"}) == build_config({"backends": "cpu-fp32"})


def test_the_stored_configuration_reads_back_whole():
    """What a run folder's meta.json stores (asdict, through JSON) builds the same RunConfig again:
    every nested axis included (the worker processes, torchrun's ranks and --resume read it)."""
    import json
    from dataclasses import asdict

    from bench.config.build import config_from_dict

    cfg = build_config({"backends": "cpu-fp32", "scenarios": "server,offline", "seeds": 3, "max_batch": 8,
                        "launcher": "torchrun", "scaling": "1,2", "batch_sizes": "1,8", "ort_opt_level": "basic"})
    stored = json.loads(json.dumps(asdict(cfg), default=str))
    assert config_from_dict(stored) == cfg
