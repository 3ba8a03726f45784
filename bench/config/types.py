"""The typed configuration: one small dataclass per axis, each field with its default, its legal
values and its help text (``option``). ``bench.config.build_config`` builds them from the CLI, a
TOML file or Python; the CLI's run options and their --help are generated from these fields."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from bench import ConfigError
from bench.engines.base import BackendOptions
from bench.measure.process_state import ALLOCATORS, DEFAULT_ALLOCATOR
from bench.plumbing.options import DIST, DYNAMICS, GROUPS, INFER, OUTPUT, PROFILE, SERVE, TRAIN, WHAT, option
from bench.plumbing.values import check_name, one_of, positive

MNIST_TRAIN_IMAGES = 60_000
MAX_LR = 10.0  # a learning rate above this cannot train these models to a meaningful figure
MAX_SEED = 2**32 - 1  # numpy's and the data order's seeds are 32-bit
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "onecycle")
NORMALIZATIONS = ("minmax", "standard")
AUGMENTS = ("none", "shift")
PRESETS = ("quick", "full")
LAUNCHERS = ("none", "torchrun")
SCALING_BATCH = ("global", "per-rank")
BREAKDOWNS = ("ends", "all", "off")
AUTO = "auto"  # the backends value that picks every backend available here (bench.engines.backends.auto_backends)

@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(1, group=TRAIN, help="maximum epochs per model (with stop_at_target training may end "
                                              "earlier)")
    batch_size: int = option(128, group=TRAIN, help="training batch size")
    lr: float = option(1e-3, group=TRAIN, help="learning rate (peak with --schedule onecycle)")
    optimizer: str = option("adam", choices=OPTIMIZERS, group=TRAIN, help="adam | sgd (sgd uses momentum 0.9)")
    schedule: str = option("constant", choices=SCHEDULES, group=TRAIN, help="constant | onecycle")
    warmup_steps: int = option(10, group=TRAIN, help="first training steps timed apart from the steady state")
    evals_per_epoch: int = option(2, group=TRAIN, help="test-set checks per epoch (curve points, time-to-accuracy)")
    target_accuracy: float = option(0.98, group=TRAIN, help="test accuracy for time_to_accuracy_s (0-1)")
    stop_at_target: bool = option(False, group=TRAIN, flag=True,
                                  help="end training at the first check that reaches the target accuracy")
    limit_train: int | None = option(None, group=TRAIN, help="use only the first N training images")
    limit_test: int | None = option(None, group=TRAIN, help="use only the first N test images")
    normalization: str = option("minmax", choices=NORMALIZATIONS, group=TRAIN,
                                help="minmax ([0, 1]) | standard (mean 0.1307, std 0.3081)")
    dropout: bool = option(True, group=TRAIN, help="on | off: off keeps every unit of the dropout layers (runs that "
                                                  "must repeat bit for bit, such as data-parallel against one "
                                                  "process)")
    label_smoothing: float = option(0.0, group=TRAIN, help="training loss's label smoothing, in [0, 1) (0: plain "
                                                           "cross-entropy; checks and test loss stay plain)")
    augment: str = option("none", choices=AUGMENTS, group=TRAIN,
                          help="none | shift (each training batch moved by up to 2 pixels each way, one random "
                               "shift per batch, drawn from the run's seed)")

    def __post_init__(self) -> None:
        positive(self, "epochs", "batch_size", "evals_per_epoch")
        if not 0 <= self.label_smoothing < 1:  # also refuses nan
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        one_of("augment", self.augment, AUGMENTS)
        positive(self, "limit_train", "limit_test", allow_none=True)
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (0 < self.lr <= MAX_LR):  # also refuses nan and inf
            raise ConfigError(f"lr must be a number in (0, {MAX_LR:g}], got {self.lr}")
        images = min(self.limit_train or MNIST_TRAIN_IMAGES, MNIST_TRAIN_IMAGES)
        if self.batch_size > images:
            raise ConfigError(f"batch_size {self.batch_size} is larger than the training set ({images:,} images"
                              f"{' with limit_train' if self.limit_train else ''}): no full batch to time")
        if not 0 <= self.target_accuracy <= 1:
            raise ConfigError(f"target_accuracy must be in [0, 1], got {self.target_accuracy}")
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("normalization", self.normalization, NORMALIZATIONS)


@dataclass(frozen=True)
class InferConfig:
    batch_sizes: tuple[int, ...] = option((1, 32, 256, 1024), group=INFER,
                                          help="inference batch sizes, comma-separated")
    rounds: int = option(12, group=INFER, help="interleaved rounds per batch size at least: every backend is timed "
                                               "once per round, in a balanced order")
    warmup_calls: int = option(2, group=INFER, help="untimed calls at the start of each round's block (the cold "
                                                    "first call is reported apart)")
    budget_s: float = option(0.24, group=INFER, help="timed seconds per inference cell over its first --rounds "
                                                     "rounds (a block: budget / rounds)")
    min_repeats: int = option(12, group=INFER, help="timed calls per cell at least (spread over the rounds)")
    max_repeats: int = option(4000, group=INFER, help="timed calls per cell over its first --rounds rounds at most")
    resolution_pct: float = option(5.0, group=INFER, help="add rounds to each pair (a backend against cpu-fp32 and "
                                                          "against the fastest) until its 95% interval is within "
                                                          "+-PCT% (0: fixed rounds)")
    max_time_s: float = option(4.0, group=INFER, help="seconds per batch size the added rounds may take at most")
    breakdown: str = option("ends", choices=BREAKDOWNS, group=INFER,
                            help="after the timing, where each call's time goes (the engine's profiler: operators by "
                                 "category, framework overhead; the time_breakdown table) at ends: the smallest and "
                                 "the largest batch size | all: every batch size | off; unless off, each training "
                                 "step's too (by phase: data, forward, backward, optimizer)")

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise ConfigError("batch_sizes must name at least one batch size")
        for bs in self.batch_sizes:
            if not isinstance(bs, int) or isinstance(bs, bool):
                raise ConfigError(f"batch_sizes must be positive integers, got {bs!r}")
            if bs < 1:
                raise ConfigError(f"batch_sizes must be >= 1, got {bs}")
        positive(self, "rounds", "min_repeats", "max_repeats")
        if self.warmup_calls < 0:
            raise ConfigError(f"warmup_calls must be >= 0, got {self.warmup_calls}")
        if not self.budget_s > 0:
            raise ConfigError(f"budget_s must be > 0, got {self.budget_s}")
        if not 0 <= self.resolution_pct < 100:
            raise ConfigError(f"resolution_pct must be a percentage in [0, 100), got {self.resolution_pct}")
        one_of("breakdown", self.breakdown, BREAKDOWNS)
        if not self.max_time_s >= 0:
            raise ConfigError(f"max_time_s must be >= 0 seconds, got {self.max_time_s}")


SCENARIOS = ("single-stream", "multi-stream", "server", "offline")  # MLPerf Inference's, in LoadGen


@dataclass(frozen=True)
class ServeConfig:
    """Deployment scenarios: every inference backend served to MLPerf LoadGen after its timing."""

    scenarios: tuple[str, ...] = option((), group=SERVE, help="LoadGen scenarios to run on every inference backend: "
                                                              "single-stream, multi-stream, server, offline "
                                                              "(comma-separated), or all; none: no scenarios")
    scenario_seconds: float = option(0.5, group=SERVE, help="LoadGen's minimum duration of each performance test "
                                                            "(MLPerf's rules ask 600 s: these runs are shortened and "
                                                            "are not MLPerf results)")
    latency_bound_ms: float | None = option(None, group=SERVE, help="Server: the p99 latency bound in ms (none: the "
                                                                    "model's own, from its registry entry)")
    max_batch: int = option(32, group=SERVE, help="Server with dynamic batching: most queued samples served in "
                                                  "one call")
    batch_timeout_us: int = option(500, group=SERVE, help="Server with dynamic batching: longest wait of the oldest "
                                                          "queued sample before its call, in microseconds")
    server_steps: int = option(7, group=SERVE, help="LoadGen Server tests per search for the highest VALID rate "
                                                    "(with and without dynamic batching each)")
    call_limit_s: float = option(60.0, group=SERVE, help="each backend is served in a process of its own, and a "
                                                         "call that has not returned after this many seconds ends "
                                                         "it and its scenarios as an error (the run goes on); 0: "
                                                         "served in the run's process, unbounded, without preparing "
                                                         "each backend again")

    def __post_init__(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise ConfigError(f"unknown scenario {', '.join(map(repr, bad))}; legal values: {', '.join(SCENARIOS)}, "
                              "all")
        if not self.scenario_seconds > 0:
            raise ConfigError(f"scenario_seconds must be > 0, got {self.scenario_seconds}")
        if self.call_limit_s < 0:
            raise ConfigError(f"call_limit_s must be >= 0 (0: no limit), got {self.call_limit_s}")
        if self.latency_bound_ms is not None and not self.latency_bound_ms > 0:
            raise ConfigError(f"latency_bound_ms must be > 0, got {self.latency_bound_ms}")
        positive(self, "max_batch", "server_steps")
        if self.batch_timeout_us < 0:
            raise ConfigError(f"batch_timeout_us must be >= 0, got {self.batch_timeout_us}")


@dataclass(frozen=True)
class DistConfig:
    """Data-parallel training launched through torchrun (``launcher = "torchrun"``)."""

    launcher: str = option("none", choices=LAUNCHERS, group=DIST,
                           help="none: train in this process; torchrun: DistributedDataParallel "
                                                    "over torchrun's ranks (gloo on CPU, nccl on CUDA), training "
                                                    "cells only")
    nproc_per_node: int = option(1, group=DIST, help="with --launcher torchrun: ranks on this node")
    nnodes: int = option(1, group=DIST, help="with --launcher torchrun: nodes in the job (each runs this same "
                                             "command)")
    rdzv_endpoint: str | None = option(None, group=DIST, help="with --launcher torchrun: HOST:PORT of the c10d "
                                                              "rendezvous (needed with --nnodes > 1)")
    scaling: tuple[int, ...] = option((), group=DIST, help="with --launcher torchrun: world sizes measured one after "
                                                           "another on this node, e.g. 1,2 (throughput, scaling "
                                                           "efficiency, all-reduce share per world size)")
    scaling_batch: str = option("global", choices=SCALING_BATCH, group=DIST,
                                help="global: every world size trains on the same global batch (each rank "
                                     "batch/N); per-rank: each rank takes the whole --batch-size")
    dist_timeout_s: float = option(60.0, group=DIST, help="bound in seconds on a collective and on the rendezvous: a "
                                                          "dead or missing rank ends the run")

    def __post_init__(self) -> None:
        one_of("launcher", self.launcher, LAUNCHERS)
        one_of("scaling_batch", self.scaling_batch, SCALING_BATCH)
        positive(self, "nproc_per_node", "nnodes")
        if not self.dist_timeout_s > 0:
            raise ConfigError(f"dist_timeout_s must be > 0, got {self.dist_timeout_s}")
        for n in self.scaling:
            if n < 1:
                raise ConfigError(f"scaling must be >= 1, got {n} (world sizes)")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"rdzv_endpoint must be HOST:PORT with a port in 1-65535, got {self.rdzv_endpoint!r}")
        if self.launcher == "none" and (self.nproc_per_node > 1 or self.nnodes > 1 or self.scaling):
            raise ConfigError("nproc_per_node, nnodes and scaling need launcher = torchrun (--launcher torchrun)")
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ConfigError("nnodes > 1 needs rdzv_endpoint HOST:PORT (the c10d rendezvous every node joins)")
        if self.nnodes > 1 and self.scaling:
            raise ConfigError("scaling runs world sizes on one node; give nnodes 1 (or no scaling)")

    @property
    def world_sizes(self) -> tuple[int, ...]:
        return self.scaling or (self.nnodes * self.nproc_per_node,)

    @property
    def enabled(self) -> bool:
        return self.launcher == "torchrun"


@dataclass(frozen=True)
class DynamicsConfig:
    """The landscape analyses of recorded training (``--dynamics``, ``mnist-bench dynamics``). Defaults
    sized so the CNN's analyses take about a minute and a half on a 2-core CPU."""

    subset: int = 500  # first N training images for losses and surfaces
    grid: int = 15  # surface points per axis (>= 2)
    span: float = 1.0  # random-plane surface over [-span, span]^2 (filter-normalized units)
    interp_points: int = 31  # alpha from -0.25 to 1.25
    perturb_scales: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
    perturb_directions: int = 5
    perturb_test: int = 1000  # first N test images
    sharpness_iters: int = 12
    sharpness_subset: int = 256
    sharpness_checkpoints: int = 3  # evenly spaced checkpoints, the final one included
    connect_points: int = 21  # points on the line between two trainings' final weights (0 and 1 included)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.grid < 2 or self.subset < 1:
            raise ConfigError(f"grid must be >= 2 and subset >= 1, got {self.grid} and {self.subset}")


@dataclass(frozen=True)
class ProfileOptions:
    """The profile phase's options (``bench.scheduling.profile_phase``): torch.profiler's schedule
    over training steps. Declared here, below the CLI, so --help answers without the phases."""

    key: ClassVar[str] = "profile"
    profile_steps: int = option(0, group=PROFILE, help="record N training steps of every training backend with "
                                                       "torch.profiler, a trace each in the run folder's profile/ "
                                                       "(Perfetto, TensorBoard); 0: no traces")
    profile_wait: int = option(1, group=PROFILE, help="with --profile-steps: steps skipped before the profiler's "
                                                      "warm-up")
    profile_warmup: int = option(2, group=PROFILE, help="with --profile-steps: the profiler's warm-up steps, not "
                                                        "recorded")
    record_shapes: bool = option(False, group=PROFILE, flag=True, help="with --profile-steps: record input shapes")
    profile_memory: bool = option(False, group=PROFILE, flag=True, help="with --profile-steps: record tensor "
                                                                        "allocations")
    with_stack: bool = option(False, group=PROFILE, flag=True, help="with --profile-steps: record Python stacks")

    def __post_init__(self) -> None:
        for name in ("profile_steps", "profile_wait", "profile_warmup"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def total_steps(self) -> int:
        return self.profile_wait + self.profile_warmup + self.profile_steps


def _all_models() -> tuple[str, ...]:
    from models import model_names

    return tuple(model_names())


def _auto_backends() -> tuple[str, ...]:
    from bench.engines.backends import auto_backends

    return auto_backends()


@dataclass(frozen=True)
class RunConfig:
    models: tuple[str, ...] = option(factory=_all_models, group=WHAT, help="comma-separated model names")
    backends: tuple[str, ...] = option(factory=_auto_backends, group=WHAT,
                                       help="comma-separated backend names, or auto: every backend available here, "
                                            "one per engine family and precision; see 'mnist-bench backends'")
    preset: str = option("quick", choices=PRESETS, group=WHAT,
                         help="quick: one epoch per model on 12,000 images; full: train to the accuracy targets")
    seed: int = option(0, group=TRAIN, help="random seed")
    seeds: int = option(1, group=TRAIN, help="time to accuracy as MLPerf Training measures it: train each training "
                                             "backend N times (seeds seed..seed+N-1, interleaved), each stopped at "
                                             "the target on a validation split; 1: no such measurement")
    validation_images: int = option(5000, group=TRAIN, help="with --seeds: N training images held out for the "
                                                            "stopping checks (never trained on; one fixed random "
                                                            "draw, the same for every seed and backend)")
    threads: int | None = option(None, group=INFER, help="torch intra-op threads (none: torch's choice)")
    processes: int = option(2, group=INFER, help="spread the inference rounds over N processes, one after another "
                                                 "(this one, then N - 1 fresh workers), so each interval also "
                                                 "covers how far a ratio moves between processes (1: this process "
                                                 "only; a torchrun run uses 1)")
    allocator: str = option(DEFAULT_ALLOCATOR, choices=ALLOCATORS, group=INFER,
                            help="the C allocator every process of the run uses: tuned (glibc with its mmap "
                                 "and trim thresholds fixed at 256 and 512 MiB, so large buffers are reused "
                                 "instead of page-faulted on every call), system (glibc's own moving "
                                 "thresholds, untuned), jemalloc or tcmalloc (caching allocators, preloaded; "
                                 "Debian's libjemalloc2, libtcmalloc-minimal4)")
    out: Path = option(Path("results"), group=OUTPUT, help="results folder")
    data_dir: Path | None = option(None, group=OUTPUT, help="folder with the four MNIST files (raw or .gz); also "
                                                            "$MNIST_BENCH_DATA")
    dynamics: bool = option(False, group=DYNAMICS, flag=True,
                            help="record optimization dynamics (every training backend) and analyse them: the "
                                 "reference's landscape, each other backend against its minimum")
    dynamics_every: int = option(1, group=DYNAMICS, help="with --dynamics: per-layer statistics every K steps")
    grid: int = option(DynamicsConfig.grid, group=DYNAMICS, help="with --dynamics: surface points per axis")
    subset: int = option(DynamicsConfig.subset, group=DYNAMICS, help="with --dynamics: first N training images "
                                                                     "evaluated")
    name: str | None = option(None, group=OUTPUT, help="a name for the run: its folder ends with it, and report, "
                                                       "compare, export, dynamics and --resume accept it in place "
                                                       "of the folder")
    train: dict[str, TrainConfig] = field(default_factory=dict)  # per model
    infer: InferConfig = field(default_factory=InferConfig)
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    distributed: DistConfig = field(default_factory=DistConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    phase_options: dict[str, Any] = field(default_factory=dict)  # a registered phase's options by its class's key
    # the phases a run is limited to, where a command runs one alone (``mnist-bench profile``); empty: every
    # phase the options ask for
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        one_of("preset", self.preset, PRESETS)
        one_of("allocator", self.allocator, ALLOCATORS)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        for key, least in (("threads", 1), ("processes", 1), ("seeds", 1), ("validation_images", 1),
                           ("dynamics_every", 1), ("grid", 2), ("subset", 1)):
            value = getattr(self, key)
            if value is not None and value < least:
                raise ConfigError(f"{key} must be >= {least}, got {value}")
        if self.name is not None:
            check_name(self.name)

    def train_for(self, model: str) -> TrainConfig:
        return self.train[model]

    def options_of(self, cls: type) -> Any:
        """This run's values of a phase's options (``cls``: its ``options`` dataclass); its defaults
        where the run gave none."""
        found = self.phase_options.get(cls.key)
        return found if isinstance(found, cls) else cls()


# The classes whose option fields are run options, in --help's order within each group.
OPTION_CLASSES = (RunConfig, TrainConfig, InferConfig, ServeConfig, BackendOptions, DistConfig)


@dataclass(frozen=True)
class RunOption:
    key: str  # the TOML key; the CLI's --key-with-dashes
    help: str
    group: str
    flag: bool
    choices: tuple[str, ...] | None
    owner: type  # the dataclass whose field it is


# The option classes of the phases registered beyond the configuration's own (``bench.phase.register``
# appends a phase's ``options``); each is a frozen dataclass with a ``key`` and ``option`` fields.
PHASE_OPTION_CLASSES: list[type] = [ProfileOptions]  # a built-in phase's, declared above


def phase_option_classes() -> list[type]:
    """The registered phases' own option classes (a plugin's included: the plugins load first)."""
    engine_option_classes()  # imports the backend registry, which loads $MNIST_BENCH_PLUGINS
    return list(PHASE_OPTION_CLASSES)


def engine_option_classes() -> list[type]:
    """The engines' own option classes (``Engine.options``), in the backend registry's order."""
    from bench.engines.backends import engine_option_sets

    return list(engine_option_sets())


def run_options() -> list[RunOption]:
    """Every run option, grouped as --help lists them: the configuration's own groups, then each
    registered phase's and each engine's options in a group of its own."""
    classes = (*OPTION_CLASSES, *phase_option_classes(), *engine_option_classes())
    out = [RunOption(f.name, f.metadata["help"], f.metadata["group"], f.metadata["flag"],
                     f.metadata["choices"], cls) for cls in classes for f in fields(cls) if "help" in f.metadata]
    return sorted(out, key=lambda o: GROUPS.index(o.group) if o.group in GROUPS else len(GROUPS))


def field_default(cls: type, name: str) -> Any:
    """A field's default as its dataclass declares it."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default
