import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mnist_dir(environ=os.environ, root: Path = ROOT) -> Path | None:
    """The MNIST files the tests read: $MNIST_BENCH_DATA when set; else the cache the main job
    (``mnist-bench run`` or ``mnist-bench data``) filled in the checkout, ``data/MNIST/raw``; else
    ``../shared/data/MNIST/raw`` beside the checkout."""
    env = environ.get("MNIST_BENCH_DATA")
    for candidate in ([env] if env else []) + [root / "data" / "MNIST" / "raw",
                                                root.parent / "shared" / "data" / "MNIST" / "raw"]:
        if any((Path(candidate) / f"t10k-labels-idx1-ubyte{ext}").exists() for ext in ("", ".gz")):
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found (set MNIST_BENCH_DATA, or run 'mnist-bench data' to fill data/MNIST/raw)")
    return path


# A tiny but real configuration: the first 2,048 training and 500 test images, one intra-op
# thread (on a loaded machine two OpenMP threads wait for each other at every barrier: a run's
# time then depends on the load far more than its work) and one process.
TINY = ["--limit-train", "2048", "--batch-size", "64", "--limit-test", "500", "--batch-sizes", "1,32",
        "--budget-s", "0.05", "--max-time-s", "0.5", "--epochs", "1", "--threads", "1", "--processes", "1"]


@pytest.fixture(scope="session")
def tiny_run(mnist_path, tmp_path_factory):
    """One real end-to-end run shared by the integration, report and browser tests (one process:
    worker processes are tested by ``test_worker_processes_number_their_rounds_apart``)."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("results")
    rc = main(["run", "--models", "mlp,cnn", "--backends", "cpu-fp32,onnxruntime-cpu,cuda-fp32",
               "--data-dir", str(mnist_path), "--out", str(out), *TINY])
    assert rc == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir
