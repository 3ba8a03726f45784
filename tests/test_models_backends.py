import pytest
import torch

from bench.engines.backends import BACKENDS, get_backend
from bench.measure.cost import model_cost
from models import build_model, model_names


def test_registry():
    assert model_names() == ["mlp", "cnn"]
    with pytest.raises(KeyError, match="legal values: mlp, cnn"):
        build_model("vgg")


@pytest.mark.parametrize("name, params", [("mlp", 535_818), ("cnn", 421_642)])
def test_shapes_and_params(name, params):
    model = build_model(name)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    cost = model_cost(name)
    assert cost["params"] == params
    # forward of a Linear/Conv is 2*MACs; backward costs up to twice the forward (no input grad)
    assert 2 < cost["train_flops_per_sample"] / cost["infer_flops_per_sample"] < 3.5


def test_mlp_flops_match_the_layer_sizes():
    assert model_cost("mlp")["infer_flops_per_sample"] == 2 * (784 * 512 + 512 * 256 + 256 * 10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip reasons on a machine without CUDA")
def test_cuda_backends_skip_with_reason():
    for b in BACKENDS.values():
        if b.device == "cuda" and b.trains:
            assert b.unavailable_reason() == "CUDA not available"
    if get_backend("onnxruntime-cpu").unavailable_reason() is None:  # onnxruntime installed, no CUDA build
        assert "CUDAExecutionProvider" in get_backend("onnxruntime-cuda").unavailable_reason()


def test_cpu_backends_available_and_contexts():
    assert get_backend("cpu-fp32").unavailable_reason() is None
    b = get_backend("cpu-bf16")
    with b.autocast():
        out = torch.nn.Linear(4, 4)(torch.zeros(2, 4))
    assert out.dtype == torch.bfloat16
    assert b.grad_scaler() is None and not get_backend("onnxruntime-cpu").trains
