#!/usr/bin/env bash
# GPU check: CUDA, AMP, compile and ONNX Runtime rows for both models beside cpu-fp32, the CNN's
# time to 99% test accuracy, a CUDA profile, the pytest-benchmark suite and the CUDA tests, with
# results and report.html written under OUT_DIR. On a machine without CUDA the CUDA rows are
# skipped with their reason (that is how its CPU path is tested).
#
#   MNIST_BENCH_DATA=/path/to/mnist scripts/gpu_check.sh OUT_DIR
#   (GPU_CHECK_LIMIT_TRAIN, GPU_CHECK_BUDGET_S, GPU_CHECK_SEEDS shrink it for a quick try)
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
py=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
limit=${GPU_CHECK_LIMIT_TRAIN:-60000}
budget=${GPU_CHECK_BUDGET_S:-0.5}
seeds=${GPU_CHECK_SEEDS:-0,1,2}
mkdir -p "$out"
cd "$root"
status=0
step() { echo "== $* ($(date -u +%T))"; "$@" || { echo "!! failed ($?): $*"; status=1; }; }

step "$py" -m bench backends
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
step "$py" -m bench run --models mlp,cnn \
  --backends cpu-fp32,cuda-fp32,cuda-amp-fp16,cuda-amp-bf16,onnxruntime-cpu,onnxruntime-cuda \
  --epochs 2 --limit-train "$limit" --evals-per-epoch 4 --budget-s "$budget" --cudnn-benchmark --out "$out/results"
step "$py" benchmarks/time_to_accuracy.py --backend cuda-amp-bf16 --baseline-backend cuda-fp32 \
  --batch-size 256 --lr 4e-3 --epochs 3 --evals-per-epoch 8 --seeds "$seeds"
step "$py" -m bench profile --model cnn --backend cuda-fp32,cuda-amp-bf16 --steps 5 --limit-train 4096 \
  --out "$out/profile"
step "$py" -m pytest benchmarks/suite -q -p no:cacheprovider --benchmark-only --suite-rounds 30 \
  --suite-backends cpu-fp32,cuda-fp32,cuda-amp-bf16,onnxruntime-cpu --benchmark-json "$out/suite.json"
step "$py" -m pytest tests/test_cuda.py -m cuda -q -p no:cacheprovider -rs
step "$py" -m bench run --models mlp,cnn --backends cuda-fp32 --epochs 2 --limit-train "$limit" --batch-sizes 1 \
  --budget-s "$budget" --dynamics --out "$out/dynamics"
for model in mlp cnn; do
  step "$py" benchmarks/landscape_speed.py --model "$model" --grid 25 --subset 2000 --rounds 3
done
step "$py" -m bench report "$out"/results/* "$out/suite.json" --output "$out/report.html"
# data-parallel training through torchrun on one GPU (nccl), with its all-reduce hook
step "$py" -m bench run --launcher torchrun --nproc-per-node 1 --models mlp,cnn --backends cuda-fp32 --epochs 1 \
  --limit-train "$limit" --out "$out/ddp"
# torch.compile last: its compilations are the slowest part, and everything above is on disk by now.
step "$py" -m bench run --models cnn,mlp --backends cuda-amp-bf16-compile --epochs 1 \
  --limit-train "$limit" --evals-per-epoch 2 --batch-sizes 1,1024 --budget-s "$budget" --out "$out/compile"
step "$py" -m bench report "$out"/results/* "$out"/compile/* "$out/suite.json" --output "$out/report.html"
exit $status
