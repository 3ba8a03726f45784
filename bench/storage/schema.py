"""The result tables' contract, declared once: each table's columns, their kinds, which are required
and the legal values of the enumerated ones. ``write_cell`` checks a table against it before the
cell appears (a violation is a bug of the harness: it raises); ``read_run`` checks every file it
reads (a foreign or damaged one is named and skipped). Columns a table does not declare are allowed
(a summary row carries its phase's metrics and each engine's own figures), but a declared column
must hold its kind."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd


class Phase(StrEnum):
    """What a cell measured: the ``phase`` of its summary row and of its ``CellKey``."""

    TRAIN = "train"  # training, timed in blocks of steps
    EXPORT = "export"  # preparing a model trained elsewhere (engines that do not train)
    INFER = "infer"  # inference at one batch size, timed in rounds
    SERVE = "serve"  # MLPerf LoadGen's scenarios
    TTA = "tta"  # time to accuracy over seeds
    DYNAMICS = "dynamics"  # the landscape analyses of a recorded training
    PROFILE = "profile"  # torch.profiler over training steps


class Status(StrEnum):
    """How a cell ended: the ``status`` of its summary row."""

    OK = "ok"
    SKIPPED = "skipped"  # it could not run here (a reason says why)
    ERROR = "error"
    OOM = "oom"
    DIVERGED = "diverged"  # training stopped on a non-finite or exploding loss


KINDS = ("str", "int", "float", "bool", "bytes")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of KINDS; an int column may hold missing values as floats, a float column ints
    required: bool = False
    # the enumerated values, where there are some (a function: values that grow as phases declare themselves)
    legal: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None


def _fits(series: pd.Series, kind: str) -> bool:
    values = series.dropna()
    if values.empty:
        return True
    if kind == "str":
        return bool(values.map(lambda v: isinstance(v, str)).all())
    if kind == "bytes":
        return bool(values.map(lambda v: isinstance(v, (bytes, bytearray))).all())
    if kind == "bool":
        return pd.api.types.is_bool_dtype(values) or bool(values.map(lambda v: isinstance(v, bool)).all())
    if kind == "int":
        return pd.api.types.is_integer_dtype(values) or (pd.api.types.is_float_dtype(values)
                                                           and bool((values == values.round()).all()))
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    def problems(self, df: pd.DataFrame) -> list[str]:
        """What is wrong with ``df`` as this table (empty: nothing). A table without rows (a training
        that diverged before its first check has no curve) has nothing to misread."""
        if df.empty:
            return []
        missing = [c.name for c in self.columns if c.required and c.name not in df.columns]
        out = [f"no {', '.join(missing)} column"] if missing else []
        for c in self.columns:
            if c.name not in df.columns:
                continue
            if not _fits(df[c.name], c.kind):
                out.append(f"{c.name} is not {c.kind}")
            elif c.legal is not None:
                legal = c.legal() if callable(c.legal) else c.legal
                bad = sorted(set(df[c.name].dropna().astype(str)) - set(legal))
                if bad:
                    out.append(f"{c.name} holds {', '.join(map(repr, bad[:3]))} (legal: {', '.join(legal)})")
        return out


def _cols(spec: str, required: str = "") -> tuple[Column, ...]:
    """Columns from "name:kind ..." (required ones in ``required``)."""
    needed = set(required.split())
    return tuple(Column(n, k, n in needed) for n, k in (item.split(":") for item in spec.split()))


PHASES = tuple(p.value for p in Phase)
_DECLARED: list[str] = []  # phases declared beyond the built-in ones (a plugin's, or a stored run's catalog)


def known_phases() -> tuple[str, ...]:
    """The legal phases of a cell: the built-in ones, then each declared one."""
    return PHASES + tuple(_DECLARED)


def declare_phase(name: str, tables: tuple[Table, ...] = ()) -> None:
    """A phase from outside the built-in ones (``bench.phase``'s registry, or a run folder's stored
    catalog) and the tables its cells write: legal from now on, for writing and for reading."""
    if not re.fullmatch(r"[a-z]+", name):
        raise ValueError(f"a phase name is lowercase letters only (it is part of a cell id); got {name!r}")
    if name not in known_phases():
        _DECLARED.append(name)
    for t in tables:
        TABLES.setdefault(t.name, t)
STATUSES = tuple(s.value for s in Status)
SCENARIO_NAMES = ("single-stream", "multi-stream", "server", "offline")
ANALYSES = ("interpolation", "surface", "pca_surface", "pca_path", "pca_variance", "perturbation", "sharpness",
            "connectivity", "seed_connectivity")

_TABLES = (
    Table("summary", "one row per cell: the row header (model, backend, device, precision, engine, phase, "
          "batch_size, status, reason), then that phase's metrics (bench.measure.metrics) and each engine's own "
          "figures and settings",
          (*_cols("model:str backend:str device:str precision:str engine:str", "model backend"),
           Column("phase", "str", True, known_phases), Column("batch_size", "int"),
           Column("status", "str", True, STATUSES),
           Column("reason", "str"))),
    Table("timings", "train and infer: every timed call (inference) or block of steady-state steps (training), "
          "kept so any statistic can be recomputed: round, process, position (in the round's order), call, "
          "timestamp_s (epoch seconds), seconds (the device clock), wall_seconds (inference), samples, loss (training: "
          "that step's training loss)",
          _cols("round:int process:int position:int call:int step:int timestamp_s:float seconds:float "
                "wall_seconds:float samples:int loss:float", "round seconds samples")),
    Table("machine", "per model and phase (batch size): one row per round: group, round, timestamp_s, control_ms "
          "and control_min_ms (median and fastest of 5 calls of a fixed 384x384 fp32 matmul: the machine's speed "
          "index), loadavg_1m, cpu_mhz, steal_frac, other_cores (cores other processes kept busy), gpu_clock_mhz, "
          "gpu_temp_c",
          _cols("group:str round:int timestamp_s:float control_ms:float control_min_ms:float loadavg_1m:float "
                "cpu_mhz:float steal_frac:float", "group round")),
    Table("epochs", "training: one row per epoch",
          _cols("epoch:int wall_s:float train_s:float eval_s:float data_s:float compute_s:float "
                "epoch_samples_per_s:float train_loss:float test_accuracy:float", "epoch")),
    Table("curve", "training: one row per test-set check",
          _cols("epoch:int step:int epoch_progress:float train_s:float wall_s:float train_loss:float "
                "test_loss:float test_accuracy:float", "wall_s test_accuracy")),
    Table("classes", "training: one row per class", _cols("class:int precision:float recall:float f1:float "
                                                            "support:int", "class")),
    Table("confusion", "training: one row per (true, pred) pair", _cols("true:int pred:int count:int",
                                                                         "true pred count")),
    Table("misclassified", "training: first misclassified test images (pixels: 784 uint8 bytes)",
          _cols("index:int label:int pred:int pixels:bytes", "index label pred")),
    Table("scenarios", "--scenarios: one row per MLPerf LoadGen test (step and target_qps: the Server search; "
          "MultiStream latencies per query of 8 samples; log: its folder of LoadGen logs in the cell)",
          (Column("scenario", "str", True, SCENARIO_NAMES),
           *_cols("batching:bool step:int target_qps:float valid:bool loadgen_reason:str achieved_qps:float "
                  "scheduled_qps:float p50_ms:float p90_ms:float p99_ms:float max_ms:float queries:int log:str",
                  "valid"))),
    Table("served", "--scenarios: one row per served query of a Server test (no batching) at the highest VALID "
          "rate: LoadGen's latency and issue delay, the harness's own handover, call and answer times",
          _cols("latency_ms:float issue_delay_ms:float handover_ms:float call_ms:float answer_ms:float "
                "other_ms:float stalled_call:bool", "latency_ms")),
    Table("seeds", "--seeds: one row per seed of a time-to-accuracy cell",
          _cols("seed:int reached:bool time_to_accuracy_s:float train_s:float eval_s:float epochs_run:int "
                "steps:int validation_accuracy:float test_accuracy:float diverged:str", "seed reached")),
    Table("dynamics_layers", "--dynamics: one row per (step, layer); updates_below_spacing (bf16 and fp16 "
          "backends): of the weights the step changed, the share whose value in that format stayed the same",
          _cols("step:int layer:str grad_norm:float grad_abs_mean:float grad_abs_max:float weight_norm:float "
                "update_ratio:float updates_below_spacing:float", "step layer")),
    Table("dynamics_steps", "--dynamics: one row per step", _cols("step:int loss:float lr:float", "step")),
    Table("landscape", "--dynamics analyses, one row per evaluated point (interpolation: x=alpha; surface / "
          "pca_surface: x, y plane coordinates; pca_path: x, y, step of a checkpoint; pca_variance: x=component, "
          "value=explained-variance ratio; perturbation: x=scale, y=direction; sharpness: x=power iteration, "
          "step=checkpoint, value=eigenvalue estimate; connectivity: x=alpha on the line from the model's "
          "reference backend's final weights (0) to this backend's (1); seed_connectivity, in the reference's "
          "cell: x=alpha from its final weights (0) to those of the same training from the next seed (1))",
          (Column("analysis", "str", True, ANALYSES),
           *_cols("x:float y:float step:int value:float loss:float accuracy:float", "x"))),
    Table("profile_ops", "profile: one row per operator (over the active steps)",
          _cols("name:str calls:int self_cpu_time_us:float cpu_time_total_us:float self_device_time_us:float "
                "device_time_total_us:float flops:float", "name")),
    Table("profile_phases", "profile: one row per phase of a training step (data, forward, backward, optimizer)",
          _cols("phase:str cpu_ms_per_step:float device_ms_per_step:float", "phase")),
    Table("ranks", "data-parallel training: one row per rank",
          _cols("rank:int local_rank:int node_rank:int host:str pid:int steady_s:float samples:int "
                "allreduce_s:float compute_s:float rank_samples_per_s:float allreduce_share:float steps:int", "rank")),
    Table("time_breakdown", "infer and train: where one call (a training step) goes, from a pass right after the "
          "timed rounds (blocks), in their state: "
          "a row per category (kind category: matmul & conv, elementwise & activation, casts & layout, memory, other "
          "operators, framework overhead = the call's wall time less its operators), per top operator by self time "
          "(kind operator) and, for a training step, per phase (kind phase: data, forward, backward, optimizer, each "
          "its median over the pass's blocks of plain steps), seconds per call (the profiler's own cost per record "
          "taken off) and share of the plain call; the pass's plain call (wall_s_per_call), its profiled call, the "
          "profiler's cost per record, the timed call of the rounds the plain calls ran in (timed_s_per_call), the "
          "plain call over the timed "
          "one, the pass's rounds of plain blocks (pass_rounds), the page "
          "faults per call (inference); for a step, the compiled regions it enters and the graphs compiled during "
          "the pass",
          (Column("kind", "str", True, ("category", "operator", "phase")),
           *_cols("name:str category:str seconds_per_call:float share:float calls:int wall_s_per_call:float "
                  "profiled_s_per_call:float profiler_s_per_operator:float timed_s_per_call:float "
                  "wall_vs_timed:float page_faults_per_call:float compiled_regions_per_call:float "
                  "graphs_compiled_in_pass:int pass_rounds:int", "name category seconds_per_call"))),
    Table("profile_hta", "profile of a CUDA backend: HolisticTraceAnalysis's temporal breakdown of GPU time (idle, "
          "compute, non-compute, in ns and %) with the trace's name, or one row with a note why not", ()),
)
TABLES: dict[str, Table] = {t.name: t for t in _TABLES}
