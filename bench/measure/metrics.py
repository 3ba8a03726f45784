"""One declaration per headline metric: its column in the summary table, the header it is shown
under, its unit, which direction is better, its interval columns and what it means. The summary
table, the terminal, the exports, the history index and ``history --metric`` all iterate these
declarations; none keeps a list of its own."""

from __future__ import annotations

from dataclasses import dataclass

UNITS = ("samples/s", "ms", "s", "bytes", "fraction")
SUMMARY_AT = ("", "train", "batch1", "largest")


@dataclass(frozen=True)
class Metric:
    name: str  # the summary table's column (units in the name)
    label: str  # the header a person reads (the value is printed with its unit)
    unit: str  # one of UNITS: how a value is printed
    better: str  # higher | lower
    phase: str  # train | infer (per batch size) | serve (LoadGen's scenarios) | tta (run --seeds)
    definition: str
    ci: tuple[str, str] | None = None  # the summary columns of its 95% interval
    # where the one-row-per-backend summary shows it: "" (not there) | train (the training cell) |
    # batch1 (the inference cell at batch 1) | largest (the inference cell at the largest batch)
    summary: str = ""
    in_table: bool = True  # shown in its phase's table (Training or Inference)
    # the figure its phase's paired rounds are ranked in and shown as (the verdict's samples/s or
    # seconds): one per phase that pairs rounds (train, infer, tta). Every metric, paired or not, is
    # also ranked on its own by its better direction (bench.analysis.ranking).
    paired: bool = False

    def __post_init__(self) -> None:
        if self.unit not in UNITS or self.better not in ("higher", "lower") or self.summary not in SUMMARY_AT \
                or self.phase not in ("train", "infer", "serve", "tta"):
            raise ValueError(f"metric {self.name}: unit in {UNITS}, better higher|lower, phase train|infer|serve|tta, "
                             f"summary in {SUMMARY_AT}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Its column and its interval's columns."""
        return (self.name, *(self.ci or ()))


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("test_accuracy", "test accuracy", "fraction", "higher", "train",
           "top-1 accuracy on the test split after training", summary="train"),
    Metric("train_samples_per_s", "train samples/s", "samples/s", "higher", "train",
           "steady-state training speed: 1 / the median over blocks of steps of each block's median seconds per "
           "sample (warm-up excluded)", ("train_samples_per_s_ci_low", "train_samples_per_s_ci_high"), summary="train",
           paired=True),
    Metric("time_to_accuracy_s", "time to target", "s", "lower", "train",
           "training seconds (evaluation excluded) until a check first reached the target accuracy", summary="train"),
    Metric("p50_latency_ms", "p50 latency", "ms", "lower", "infer",
           "median seconds per call over every timed call at one batch size",
           ("round_p50_ci_low_ms", "round_p50_ci_high_ms"), summary="batch1"),
    Metric("samples_per_s", "infer samples/s", "samples/s", "higher", "infer",
           "inference speed: 1 / the median over rounds of each round's median seconds per sample",
           ("samples_per_s_ci_low", "samples_per_s_ci_high"), summary="largest", paired=True),
    Metric("mfu", "train MFU", "fraction", "higher", "train",
           "model FLOP utilization: achieved training FLOP/s over the measured peak matmul FLOP/s", summary="train"),
    Metric("weights_bytes", "weights", "bytes", "lower", "infer",
           "the model's weights as the backend holds them: its parameters' bytes, or the ONNX file it runs",
           in_table=False),
    Metric("prepare_rss_growth_bytes", "preparation memory", "bytes", "lower", "infer",
           "what preparing the backend (export, quantization, session, compiling, the first call) added to the "
           "process's resident set", in_table=False),
    Metric("rss_growth_bytes", "memory per call", "bytes", "lower", "infer",
           "what calls at one batch size added to the process's resident set (activations and workspace), "
           "measured after freed heap was handed back", in_table=False),
    Metric("peak_rss_bytes", "peak RSS", "bytes", "lower", "train",
           "the process's resident-set high-water mark during the cell (the interpreter, data and every backend "
           "loaded so far included); what a backend itself costs is in the memory section"),
    Metric("single_stream_p90_ms", "SingleStream p90", "ms", "lower", "serve",
           "MLPerf LoadGen SingleStream: the 90th percentile latency of one-image queries issued one after another "
           "(LoadGen's figure, its Python callback included)"),
    Metric("multi_stream_p99_ms", "MultiStream p99", "ms", "lower", "serve",
           "MLPerf LoadGen MultiStream: the 99th percentile latency of queries of 8 images"),
    Metric("offline_samples_per_s", "Offline samples/s", "samples/s", "higher", "serve",
           "MLPerf LoadGen Offline: samples per second over one query of every sample, served in batches of the "
           "backend's fastest batch size"),
    Metric("server_max_valid_qps", "Server max QPS", "samples/s", "higher", "serve",
           "MLPerf LoadGen Server: the highest Poisson arrival rate LoadGen reported VALID (p99 under the latency "
           "bound), one call per query"),
    Metric("server_max_valid_qps_batching", "Server max QPS, batching", "samples/s", "higher", "serve",
           "the same with dynamic batching: queued queries served together, up to max_batch or batch_timeout_us"),
    Metric("tta_mlperf_s", "time to target, MLPerf", "s", "lower", "tta",
           "time to accuracy as MLPerf Training states it: over --seeds runs, each stopped at the target on the "
           "validation split, the fastest and the slowest dropped, the mean of the rest (training seconds); missing "
           "when any seed did not reach the target"),
    Metric("tta_median_s", "time to target, median", "s", "lower", "tta",
           "the median over the seeds that reached the target, with its 95% bootstrap interval",
           ("tta_median_ci_low_s", "tta_median_ci_high_s"), paired=True),
)}


def paired_metric(phase: str) -> str:
    """The column a phase's paired ranking is shown in (``Metric.paired``)."""
    found = [m.name for m in METRICS.values() if m.paired and m.phase == phase]
    if len(found) != 1:
        raise ValueError(f"phase {phase}: {len(found)} metrics declared paired=True; one is needed")
    return found[0]


def metric(name: str) -> Metric:
    from bench import ConfigError

    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; legal values: {', '.join(METRICS)}") from None
