"""A run folder's life: created (or reopened by ``--resume``) with its meta.json at "running",
closed with the status it ended in. The cells themselves go through ``bench.storage.results.RunWriter``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from bench.plumbing.stages import Stages
from bench.storage.meta import collect_metadata, now_iso
from bench.storage.results import RESULTS_SCHEMA_VERSION, RunWriter, new_run_id, write_json, write_samples


def open_run(cfg, argv: list[str] | None, mnist, resume: Path | None = None, stored: dict | None = None
             ) -> tuple[RunWriter, dict]:
    """A new run folder under ``cfg.out``, or ``resume`` reopened (its unfinished cells cleared);
    returns its writer and its meta.json, written at status "running" with this process's pid.
    A new folder appears whole: it is filled under a hidden name (``.new-<run id>``) and renamed,
    so a process killed while creating it leaves no run folder without its meta.json. ``stored``:
    what the run keeps of the registries and its plan (``catalog``, ``plan``); a resumed run keeps
    its own where it has them."""
    stored = stored or {}
    if resume is None:
        run_id = new_run_id() + (f"-{cfg.name}" if cfg.name else "")
        staging = cfg.out / f".new-{run_id}"
        staging.mkdir(parents=True)
        meta = {**collect_metadata(cfg, argv), "run_id": run_id, "data_source": mnist.source,
                "start_time": now_iso(), "status": "running", "pid": os.getpid(), "name": cfg.name,
                "schema_version": RESULTS_SCHEMA_VERSION, **stored}
        write_samples(staging, mnist)
        write_json(staging / "meta.json", meta)
        os.rename(staging, cfg.out / run_id)
        return RunWriter(cfg.out / run_id), meta
    else:
        writer = RunWriter(Path(resume))
        old = json.loads((writer.run_dir / "meta.json").read_text(encoding="utf-8"))
        meta = {**stored, **old, "status": "running", "pid": os.getpid(), "hostname": collect_metadata()["hostname"],
                "resumed": [*old.get("resumed", []), {"at": now_iso(), "from_status": old.get("status")}]}
        for unfinished in (writer.run_dir / "cells").glob(".tmp-*"):
            shutil.rmtree(unfinished, ignore_errors=True)
    write_json(writer.run_dir / "meta.json", meta)
    return writer, meta


def _against_plan(meta: dict, present: set[str], status: str) -> list[str]:
    """The run's cells checked against its plan: a complete run that lacks a planned cell, or holds
    one the plan does not name, says so."""
    from bench.storage.plan import missing_cells, unplanned_cells

    if status != "complete" or not meta.get("plan"):
        return []
    out = []
    missing, unplanned = missing_cells(meta, present), unplanned_cells(meta, present)
    if missing:
        out.append(f"{len(missing)} planned cell(s) have no results: {', '.join(k.id for k in missing[:5])}")
    if unplanned:
        out.append(f"{len(unplanned)} cell(s) outside the run's plan: {', '.join(unplanned[:5])}")
    return out


def close_run(writer: RunWriter, meta: dict, status: str, warnings: list[str], **extra) -> None:
    """meta.json at its final status (complete | interrupted), with the run's warnings, printed too."""
    present = {p.name for p in (writer.run_dir / "cells").glob("*") if not p.name.startswith(".")}
    warnings = [*warnings, *_against_plan(meta, present, status)]
    meta.update(status=status, end_time=now_iso(), warnings=warnings, **extra)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    write_json(writer.run_dir / "meta.json", meta)
    if status != "running":
        from bench.storage.run_index import try_index_run

        try_index_run(writer.run_dir)


def add_stage(run_dir: Path, stage: str, seconds: float) -> None:
    """A stage after the run closed (its report) added to meta.json's ``stages``."""
    path = Path(run_dir) / "meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    stages = Stages(list(meta.get("stages") or []))
    stages.add(stage, seconds)
    meta["stages"] = stages.rows
    write_json(path, meta)
