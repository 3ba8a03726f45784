"""Read result files (run folders and pytest-benchmark JSON) into one RunTables."""

from __future__ import annotations

from pathlib import Path

from bench import BenchError
from bench.results import RunTables, merge, read_run


def load_paths(paths: list[Path]) -> RunTables:
    runs = []
    for path in paths:
        if path.is_dir():
            runs.append(read_run(path))
        elif path.is_file() and path.suffix == ".json":
            from reports.pytest_benchmark import read_benchmark_json

            runs.append(read_benchmark_json(path))
        else:
            raise BenchError(f"{path}: not a results folder or a pytest-benchmark .json file")
    if not runs:
        raise BenchError("no result paths given")
    return merge(runs)
