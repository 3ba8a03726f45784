"""The data step: MNIST found, checked and loaded as tensors (``bench.data.mnist``)."""
