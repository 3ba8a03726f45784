"""The benchmark matrix as a pytest-benchmark suite: model x backend x phase.

    pytest benchmarks/suite --benchmark-only [--suite-backends cpu-fp32,cuda-amp-bf16]
           [--suite-batch-sizes 1,256] [--suite-rounds 30] [--benchmark-json out.json]
"""

from __future__ import annotations

import pytest

from bench.config.types import InferConfig, TrainConfig, field_default
from bench.engines.backends import backend_names, get_backend
from models import model_names

DEFAULT_BACKENDS = ",".join(backend_names())
DEFAULT_MODELS = ",".join(model_names())
# the run's own defaults (bench.config.types), so the suite and a run time the same batches
DEFAULT_BATCH_SIZES = ",".join(map(str, field_default(InferConfig, "batch_sizes")))
DEFAULT_TRAIN_BATCH = field_default(TrainConfig, "batch_size")


def pytest_addoption(parser):
    group = parser.getgroup("mnist-bench suite")
    group.addoption("--suite-models", default=DEFAULT_MODELS, help=f"models to benchmark (default {DEFAULT_MODELS})")
    group.addoption("--suite-backends", default=DEFAULT_BACKENDS, help="backends (default: all; unavailable "
                                                                        "ones are skipped with the reason)")
    group.addoption("--suite-batch-sizes", default=DEFAULT_BATCH_SIZES,
                    help=f"inference batch sizes (default {DEFAULT_BATCH_SIZES})")
    group.addoption("--suite-train-batch", type=int, default=DEFAULT_TRAIN_BATCH,
                    help=f"training batch size (default {DEFAULT_TRAIN_BATCH})")
    group.addoption("--suite-rounds", type=int, default=None,
                    help="fixed timed rounds per benchmark (pedantic mode); default: pytest-benchmark's own "
                         "calibration, so --benchmark-min-rounds and --benchmark-max-time apply")
    group.addoption("--suite-warmup", type=int, default=3, help="warm-up rounds after the cold call (default 3)")


def _marks(backend_name: str, batch_size: int | None = None) -> list:
    b = get_backend(backend_name)
    names = set(b.engine.test_marks) | ({"cuda"} if b.device == "cuda" else set())
    if (batch_size or 0) >= 1024:
        names.add("slow")
    return [getattr(pytest.mark, n) for n in sorted(names)]


def pytest_generate_tests(metafunc):
    opt = metafunc.config.getoption
    models = opt("--suite-models").split(",")
    backends = opt("--suite-backends").split(",")
    if "batch_size" in metafunc.fixturenames:
        sizes = [int(s) for s in opt("--suite-batch-sizes").split(",")]
        params = [pytest.param(m, b, bs, marks=_marks(b, bs), id=f"{m}-{b}-bs{bs}")
                  for m in models for b in backends for bs in sizes]
        metafunc.parametrize("model_name,backend_name,batch_size", params)
    elif "backend_name" in metafunc.fixturenames:
        params = [pytest.param(m, b, marks=_marks(b), id=f"{m}-{b}") for m in models for b in backends]
        metafunc.parametrize("model_name,backend_name", params)


@pytest.fixture(scope="session")
def mnist():
    from bench.data.mnist import resolve_mnist

    return resolve_mnist()


@pytest.fixture(scope="session")
def suite_options(request):
    opt = request.config.getoption
    return {"rounds": opt("--suite-rounds"), "warmup": opt("--suite-warmup"),
            "train_batch": opt("--suite-train-batch")}
