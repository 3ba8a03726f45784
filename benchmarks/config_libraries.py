"""Typed-configuration libraries measured against the harness's own parsing (``bench.config``):
can pydantic, cattrs or tyro read the same values from the command line's strings and from TOML into
our dataclasses, with the same error messages, and what do they cost to import?

    pip install --target /tmp/cfglibs pydantic cattrs tyro
    python -m benchmarks.config_libraries --libs /tmp/cfglibs

Each case is a (dataclass, key, value) as the command line gives it (a string) or as TOML does (a
typed value). The harness's column is what ``build_config`` answers (the value read, or its error
message); each library's column is what it answers for the same dataclass, used directly (pydantic's
TypeAdapter and cattrs' structure accept stdlib dataclasses; tyro parses an argv)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

CASES = [  # (dataclass, key, value): strings are what the command line gives, others TOML's types
    ("InferConfig", "batch_sizes", "1,32"),
    ("InferConfig", "batch_sizes", [1, 32]),
    ("InferConfig", "batch_sizes", "1,x"),
    ("InferConfig", "rounds", "abc"),
    ("InferConfig", "rounds", "-3"),
    ("InferConfig", "budget_s", "fast"),
    ("TrainConfig", "optimizer", "adagrad"),
    ("TrainConfig", "dropout", "off"),
    ("TrainConfig", "label_smoothing", "1.5"),
    ("ServeConfig", "scenarios", "server,offline"),
]


def _short(x) -> str:
    text = " ".join(str(x).split())
    return text if len(text) <= 110 else text[:107] + "..."


def ours(cls: str, key: str, value):
    from bench import ConfigError
    from bench.config.build import build_config

    try:
        cfg = build_config({key: value, "backends": "cpu-fp32"})
    except ConfigError as e:
        return f"error: {e}"
    part = {"InferConfig": cfg.infer, "TrainConfig": cfg.train_for("mlp"), "ServeConfig": cfg.serve}[cls]
    return repr(getattr(part, key))


def pydantic_(cls: str, key: str, value):
    import pydantic

    import bench.config.types as t

    try:
        got = pydantic.TypeAdapter(getattr(t, cls)).validate_python({key: value})
    except Exception as e:  # noqa: BLE001 - the library's own error, shown as it is
        return f"error: {type(e).__name__}: {e}"
    return repr(getattr(got, key))


def cattrs_(cls: str, key: str, value):
    import cattrs

    import bench.config.types as t

    try:
        got = cattrs.Converter().structure({key: value}, getattr(t, cls))
    except Exception as e:  # noqa: BLE001
        return f"error: {type(e).__name__}: {getattr(e, 'exceptions', [e])[0]!r}"
    return repr(getattr(got, key))


def tyro_(cls: str, key: str, value):
    import tyro

    import bench.config.types as t

    if not isinstance(value, str):
        return "(tyro reads an argv only)"
    flag = f"--{key.replace('_', '-')}"
    try:
        got = tyro.cli(getattr(t, cls), args=[flag, *value.split(",")] if key in ("batch_sizes", "scenarios")
                       else [flag, value], console_outputs=False)
    except SystemExit as e:
        return f"error: exit {e.code} (tyro prints its own usage message)"
    except Exception as e:  # noqa: BLE001
        return f"error: {type(e).__name__}: {e}"
    return repr(getattr(got, key))


def import_seconds(module: str, libs: str | None, repeats: int = 5) -> float:
    """Median seconds a fresh interpreter takes to import ``module`` (less a bare interpreter's)."""
    path = f"import sys; sys.path.insert(0, {libs!r}); " if libs else ""
    times = []
    for code in (f"{path}import {module}", f"{path}pass"):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - start)
        times.append(sorted(runs)[repeats // 2])
    return times[0] - times[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--libs", help="a folder the libraries were installed into (pip install --target)")
    args = p.parse_args()
    if args.libs:
        sys.path.insert(0, args.libs)
    readers = {"harness": ours, "pydantic": pydantic_, "cattrs": cattrs_, "tyro": tyro_}
    for cls, key, value in CASES:
        print(f"{cls}.{key} = {value!r}")
        for name, read in readers.items():
            print(f"  {name:<9} {_short(read(cls, key, value))}")
    print("\nimport cost (median of 5 fresh interpreters, a bare one's subtracted):")
    for module in ("bench.config.build", "pydantic", "cattrs", "tyro"):
        print(f"  {module:<20} {import_seconds(module, args.libs) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
