"""This machine's run-to-run variation, measured once (``mnist-bench calibrate``) and used by
``compare`` for runs whose rounds all ran in one process. Two runs of one configuration differ by
more than the rounds inside either shows (process layout, the machine's minute-to-minute speed);
a comparison of two such runs is honest only with that variation in its interval.

``mnist-bench calibrate`` runs one configuration K times, each in a fresh process; this module
stores what ``bench.analysis.calibration`` computed of them (per phase, the pooled standard
deviation of a cell's log figure between runs), keyed by machine, in ``<results>/calibration.json``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.storage.results import atomic_write_text

CALIBRATION_FILE = "calibration.json"


def machine_key(meta: dict) -> str:
    """The machine a run ran on, as far as its timings are concerned."""
    return " | ".join(str(meta.get(k)) for k in ("hostname", "cpu_model", "cpu_count", "torch_threads", "gpu_name"))


def load(paths: list[Path]) -> dict[str, dict]:
    """Every calibration found in these files (machine key -> entry); unreadable files are skipped
    with a warning."""
    found: dict[str, dict] = {}
    for p in paths:
        if not p.is_file():
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            found.update({k: v for k, v in data.get("machines", {}).items() if k not in found})
        except (OSError, ValueError, AttributeError) as e:
            print(f"warning: {p}: not a calibration file ({type(e).__name__}); ignored", file=sys.stderr)
    return found


def save(results: Path, meta: dict, sigma: dict[str, dict], runs: list[str]) -> Path:
    path = results / CALIBRATION_FILE
    data = {"schema_version": 1, "machines": {}}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    data.setdefault("machines", {})[machine_key(meta)] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs,
        "command_line": meta.get("command_line"), "phases": sigma}
    atomic_write_text(path, json.dumps(data, indent=2))
    return path
