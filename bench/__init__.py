"""mnist-bench: a benchmarking and profiling harness for PyTorch models on MNIST."""

__version__ = "0.1.0"

# Exit codes besides 0, 2 (bad input: BenchError) and 130/143 (stopped by a signal):
REGRESSION_EXIT = 3  # compare --fail-above: a significant slowdown beyond the threshold, or an unjudged cell
FAILED_CELLS_EXIT = 4  # run: every requested cell ran, but some ended in error, oom or diverged


class BenchError(Exception):
    """A user-facing problem (bad input, missing data): one message, exit code 2."""

    exit_code = 2


class ConfigError(BenchError):
    """A bad configuration value or key; the message names the legal values."""
