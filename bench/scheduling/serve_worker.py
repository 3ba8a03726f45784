"""A backend's deployment scenarios in a process of their own, so that a call that never returns
can be ended: LoadGen cannot end a test early and a Python thread cannot be stopped, but a process
can. The run's process hands the backend's weights, the test split and the scenarios' plan to a
fresh process, which prepares the backend again (``bench.scheduling.fresh``) and serves it to
LoadGen, its logs in the run's scratch folder:

    python -m bench.plumbing.child_entry bench.scheduling.serve_worker SPEC OUT

The run's process watches the call in flight (``bench.serving.watch``): one that has not returned
after ``--call-limit-s`` ends the serving process (0: the scenarios are served in the run's process,
unbounded, without the second preparation), and the backend's scenarios are an error with
the tests done and LoadGen's logs, as they are where the backend raises or the process dies. The
serving process dies with the run, even by SIGKILL, and a stop asked of the run ends it at once
(``bench.plumbing.children``)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench.plumbing.children import child_command, child_env, wait_for
from bench.scheduling.fresh import prepare_again
from bench.serving.scenarios import ScenarioFailed, ServePlan, serve_tables
from bench.serving.sut import ServedModel
from bench.serving.watch import CallWatch, running_for

PREPARING = "preparing the backend"  # where a serving process is before its first scenario


class ServingFailed(RuntimeError):
    """A backend's scenarios ended early; ``rows``: the scenario rows of the tests done."""

    def __init__(self, message: str, rows: pd.DataFrame) -> None:
        super().__init__(message)
        self.rows = rows


class _Hung(Exception):
    pass


@dataclass(frozen=True)
class ServeJob:
    """One backend's scenarios: the test split it classifies, the plan, the longest a call may take."""

    images: torch.Tensor
    labels: torch.Tensor
    plan: ServePlan
    call_limit_s: float


def serve_in_child(job: ServeJob, handed: dict, folder: Path) -> dict[str, pd.DataFrame]:
    """``job``'s scenarios served in a fresh process by the backend of ``handed`` (its weights and
    settings: ``fresh.handed_over``), its files in ``folder`` (LoadGen's logs in ``folder/loadgen``);
    the tables ``serve_tables`` makes, or ``ServingFailed``."""
    spec, out, state, call = (folder / name for name in ("spec.pt", "out.pt", "state.pt", "call"))
    torch.save({"handed": handed, "images": job.images, "labels": job.labels, "plan": job.plan,
                "log_root": str(folder / "loadgen"), "state": str(state), "call": str(call)}, spec)
    proc = subprocess.Popen(child_command("bench.scheduling.serve_worker", str(spec), str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env())

    def hung() -> None:
        if running_for(call) > job.call_limit_s:
            raise _Hung

    try:
        _, stderr = wait_for(proc, forward=False, watch=hung)
    except _Hung:
        scenario, rows = _progress(state)
        raise ServingFailed(f"a call did not return within {job.call_limit_s:g} s ({scenario}); its serving process "
                            "was ended", rows) from None
    if proc.returncode != 0:
        scenario, rows = _progress(state)
        why = ((stderr or "").strip().splitlines() or ["no output"])[-1][:300]
        raise ServingFailed(f"the serving process ended with exit code {proc.returncode} ({scenario}): {why}", rows)
    result = torch.load(out, weights_only=False)
    if "error" in result:
        raise ServingFailed(result["error"], result["rows"])
    return result["tables"]


def serve_here(prepared, job: ServeJob, folder: Path) -> dict[str, pd.DataFrame]:
    """``job``'s scenarios served in the run's own process by its ``prepared`` backend
    (``--call-limit-s 0``): no preparation again, and no bound on a call; the tables, or
    ``ServingFailed``."""
    try:
        return serve_tables(ServedModel(prepared, job.images), job.labels, job.plan, folder / "loadgen")
    except ScenarioFailed as e:
        raise ServingFailed(str(e), e.rows) from e


def _progress(state: Path) -> tuple[str, pd.DataFrame]:
    """The scenario a serving process was in and the rows of its tests done (before any: preparing)."""
    if not state.is_file():
        return PREPARING, pd.DataFrame()
    saved = torch.load(state, weights_only=False)
    return saved["scenario"], pd.DataFrame(saved["rows"])


def _save(obj: object, path: Path) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    part = path.with_name(path.name + ".part")
    torch.save(obj, part)
    os.replace(part, path)


def main(argv: list[str]) -> int:
    spec_path, out_path = map(Path, argv)
    spec = torch.load(spec_path, weights_only=False)
    (prepared,) = prepare_again(spec["handed"]).values()
    served = ServedModel(prepared, spec["images"], CallWatch(Path(spec["call"])))
    try:
        result = {"tables": serve_tables(served, spec["labels"], spec["plan"], Path(spec["log_root"]),
                                         lambda scenario, rows: _save({"scenario": scenario, "rows": list(rows)},
                                                                      Path(spec["state"])))}
    except ScenarioFailed as e:
        result = {"error": str(e), "rows": e.rows}
    _save(result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
