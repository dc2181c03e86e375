#!/usr/bin/env bash
# gpu_check.sh: the CUDA backend on a real GPU, in one run (under 8 minutes on a fresh
# H100/H200 machine with nvcc, CMake, Ninja, pybind11, PyTorch with CUDA and pytest; no
# network needed: a developer build, no pip). From the repository root:
#
#     bash benchmarks/gpu_check.sh [LOG]        # LOG defaults to $OUT/gpu_check.log or ./gpu_check.log
#
# 1. builds _core and _cuda (CMAKE_CUDA_ARCHITECTURES, default 90) next to the sources;
# 2. runs the kernel tests, the op-table test and the model tests on the device;
# 3. times a training step, ours against PyTorch eager (cuDNN, FP32 and TF32), for ResNet-20
#    and ResNet-56 v1 and ResNet-56 v2 (Keras widths) at batch 128, ResNet-50 at batch 64;
# 4. trains 2 epochs on the bundled data with --device cuda;
# and writes everything into LOG, ending with the benchmark table.
set -uo pipefail
cd "$(dirname "$0")/.."
log="${1:-${OUT:-.}/gpu_check.log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1
arch="${CMAKE_CUDA_ARCHITECTURES:-90}"
jobs="$(nproc)"
status=0
step() { echo; echo "=== $* ($(date +%T))"; }
run() {  # run LIMIT_S CMD...: a stage with a time limit; a failure is logged and counted
  local limit=$1; shift
  timeout "$limit" "$@"
  local rc=$?
  [ $rc -eq 0 ] || { echo "!!! FAILED (exit $rc): $*"; status=1; }
  return $rc
}

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
nvcc --version | tail -2
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

step "build (_core and _cuda for sm_$arch, $jobs jobs)"
run 300 cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESNET_CPP_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null || exit 1
run 300 cmake --build build/gpu -j "$jobs" || exit 1
export PYTHONPATH="$PWD/python"
python3 -m resnet_cpp info

step "tests on the device"
run 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_op_table.py \
    tests/test_cuda_models.py

step "training step, ours vs PyTorch eager (median of 5 repeats x 5 steps, after 5 warm-up steps)"
table="$(mktemp)"
bench() {  # bench LABEL ARGS...: one model's table, also collected for the summary
  local label=$1 out; shift
  out="$(mktemp)"
  echo "--- $label"
  run 150 python3 benchmarks/bench_train.py --device cuda --vs-torch --warmup 5 --repeats 5 \
      --steps 5 "$@" > "$out"
  cat "$out"
  sed -n '/^side/,$p' "$out" | sed "s/^/$label  /" >> "$table"
}
bench "resnet20-v1-b128" --model resnet20 --batch 128
bench "resnet56-v1-b128" --model resnet56 --batch 128
bench "resnet56-v2k-b128" --model resnet56 --version 2 --width keras --batch 128
bench "resnet50-b64" --model resnet50 --batch 64

step "train 2 epochs on the bundled data on the device"
run 240 python3 -m resnet_cpp train --device cuda --epochs 2 --no-progress --seed 0 \
    --out "$(dirname "$log")/gpu_check_run"

step "summary (ours/best: our FP32 vs PyTorch's best FP32 side, our TF32 vs its best TF32 side)"
cat "$table"
echo "targets on an H200: >= 1.5x on the CIFAR ResNets, >= 1.0x on ResNet-50"
echo "gpu_check: $([ $status -eq 0 ] && echo all stages passed || echo SOME STAGES FAILED); log: $log"
exit $status
