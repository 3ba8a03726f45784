"""Where the time goes: operators grouped into categories that sum to the profiled call, from
torch.profiler and from ONNX Runtime's own profiler, and a verdict's gap explained from them (or
said not to be explained). Structure only: no assertion reads a real timing's size."""

import pandas as pd
import pytest
import torch

from bench.analysis.breakdown import why
from bench.engines.backends import get_backend
from bench.engines.base import BackendOptions
from bench.measure.breakdown import CATEGORIES, OVERHEAD, breakdown, category_of


@pytest.mark.parametrize("op, category", [
    ("aten::addmm", "matmul & conv"), ("aten::mkldnn_convolution", "matmul & conv"), ("Gemm", "matmul & conv"),
    ("QLinearConv", "matmul & conv"), ("aten::relu", "elementwise & activation"),
    ("MaxPool", "elementwise & activation"),
    ("aten::_to_copy", "casts & layout"), ("aten::copy_", "casts & layout"), ("DequantizeLinear", "casts & layout"),
    ("Reshape", "casts & layout"), ("aten::empty", "memory"), ("Torch-Compiled Region: 0/2", OVERHEAD),
    ("TorchDynamo Cache Lookup", OVERHEAD), ("## Call CompiledFxGraph fx5e ##", "elementwise & activation"),
    ("SomethingNew", "other operators")])
def test_operators_fall_into_named_categories(op, category):
    assert category_of(op) == category


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10)).eval()


def _checked(table: pd.DataFrame) -> pd.DataFrame:
    cats = table[table.kind == "category"]
    assert list(cats.name) == list(CATEGORIES)
    assert cats.seconds_per_call.sum() == pytest.approx(cats.wall_s_per_call.iloc[0], rel=1e-9)
    assert (cats.seconds_per_call >= 0).all() and (table.calls >= 5).all()
    assert (table[table.kind == "operator"].seconds_per_call > 0).all()
    return cats


@pytest.mark.parametrize("backend", ["cpu-fp32", "cpu-bf16"])
def test_a_pytorch_call_is_broken_down_by_torch_profiler(backend):
    b = get_backend(backend)
    prepared = b.engine.prepare(_model(), b, BackendOptions(), torch.zeros(8, 1, 28, 28))
    x = prepared.to_input(torch.rand(4, 1, 28, 28))
    cats = _checked(breakdown(prepared, x, timed_s=1e-4)).set_index("name")
    assert cats.loc["matmul & conv", "seconds_per_call"] > 0
    if backend == "cpu-bf16":  # autocast casts the weights and the input on every call
        assert cats.loc["casts & layout", "seconds_per_call"] > 0


@pytest.mark.onnx
def test_an_onnxruntime_call_is_broken_down_by_its_own_profiler():
    pytest.importorskip("onnxruntime")
    b = get_backend("onnxruntime-cpu")
    prepared = b.engine.prepare(_model(), b, BackendOptions(), torch.zeros(8, 1, 28, 28))
    table = breakdown(prepared, prepared.to_input(torch.rand(4, 1, 28, 28)), timed_s=1e-4)
    cats = _checked(table).set_index("name")
    assert cats.loc["matmul & conv", "seconds_per_call"] > 0
    ops = set(table[table.kind == "operator"].name)
    assert ops & {"Gemm", "FusedGemm", "MatMul"}  # ONNX Runtime's node types, not torch's operators


def _cells(seconds: dict[str, float]) -> pd.DataFrame:
    total = sum(seconds.values())
    return pd.DataFrame([{"name": c, "seconds_per_call": seconds.get(c, 0.0), "wall_s_per_call": total}
                         for c in CATEGORIES])


def test_a_gap_is_explained_by_the_categories_that_make_it():
    base = _cells({"matmul & conv": 10e-6, OVERHEAD: 5e-6})
    other = _cells({"matmul & conv": 12e-6, "casts & layout": 41e-6, OVERHEAD: 10e-6})
    words = why(other, base, timed_ratio=63 / 15)
    assert words == "casts & layout +41 µs; framework overhead +5 µs: +48 µs per call in all"


def test_a_breakdown_that_disagrees_with_the_timing_says_so_instead():
    base = _cells({"matmul & conv": 10e-6})
    other = _cells({"matmul & conv": 20e-6})
    assert why(other, base, timed_ratio=5.0).startswith("not explained: in the breakdown's pass the ratio was 2.00×")
