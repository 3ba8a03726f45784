"""mnist-bench: a benchmarking and profiling harness for PyTorch models on MNIST."""

__version__ = "0.1.0"


class BenchError(Exception):
    """A user-facing problem (bad input, missing data): one message, exit code 2."""

    exit_code = 2


class ConfigError(BenchError):
    """A bad configuration value or key; the message names the legal values."""
