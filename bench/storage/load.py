"""Read result files (run folders and pytest-benchmark JSON) into one RunTables. A path that cannot
be read is named in ``problems`` (and in the report) and the rest is read; only when nothing can be
read is it an error."""

from __future__ import annotations

from pathlib import Path

from bench import BenchError
from bench.storage.results import RunTables, merge, read_run


def saved_benchmarks(path: Path) -> list[Path]:
    """pytest-benchmark's storage folder (``.benchmarks``: one folder per machine, a JSON file per
    saved run), or one machine's folder: the saved runs, oldest first. Empty for anything else."""
    if not path.is_dir() or (path / "meta.json").exists():
        return []
    return sorted(path.glob("*.json")) or sorted(path.glob("*/*.json"), key=lambda p: p.name)


def load_one(path: Path) -> RunTables:
    path = Path(path)
    if saved := saved_benchmarks(path):
        from bench.storage.pytest_benchmark import read_benchmark_json

        return _merge_readable(saved, read_benchmark_json)
    if path.is_dir():
        return read_run(path)
    if path.is_file() and path.suffix == ".json":
        from bench.storage.pytest_benchmark import read_benchmark_json

        return read_benchmark_json(path)
    if not path.exists():
        raise BenchError(f"{path}: no such file or folder")
    raise BenchError(f"{path}: not a results folder or a pytest-benchmark .json file")


def load_paths(paths: list[Path]) -> RunTables:
    from bench.storage.run_index import DB_NAME

    paths = [p for p in paths if Path(p).name != DB_NAME]  # results/* also matches the results index
    if not paths:
        raise BenchError("no result paths given")
    return _merge_readable(paths, load_one)


def _merge_readable(paths: list[Path], read) -> RunTables:
    """Every path ``read`` can read, merged; the others named in ``problems`` (all unreadable: an error)."""
    runs, problems = [], []
    for path in paths:
        try:
            runs.append(read(path))
        except BenchError as e:
            problems.append(str(e))
    if not runs:
        raise BenchError("; ".join(problems))
    merged = merge(runs)
    merged.problems = problems + merged.problems
    return merged
