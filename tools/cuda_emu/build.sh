#!/usr/bin/env bash
# Builds an emulated resnet_cpp._cuda that runs the CUDA kernels on the CPU (no GPU, no
# driver), so the CUDA tests can check kernels, bindings and tests on any machine:
#   tools/cuda_emu/build.sh
#   PYTHONPATH=build/cuda-emu/pkg python3 -m pytest -q tests/test_cuda.py tests/test_cuda_models.py
# Needs: g++, the CUDA toolkit headers (for cuda_runtime.h), pybind11, and a built _core in
# python/resnet_cpp (the package is copied). The TF32 kernel runs on a fake wmma with the
# documented fragment layouts; graph capture records and replays launches. Not emulated:
# asynchrony between streams and blocks.
# Slow (every thread is a fiber): for correctness only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/build/cuda-emu"
cuda_inc="${CUDA_HOME:-/usr/local/cuda}/include"
[ -f "$cuda_inc/cuda_runtime.h" ] || cuda_inc="$(dirname "$(dirname "$(command -v nvcc)")")/include"
rm -rf "$out" && mkdir -p "$out/src" "$out/obj" "$out/pkg"
for f in "$root"/cpp/cuda/*.cu "$root"/cpp/cuda/gemm.cuh "$root"/cpp/cuda/reduce.cuh; do
  b=$(basename "$f"); case $b in *.cu) b=${b%.cu}.cpp;; esac
  python3 "$here/rewrite.py" "$f" "$out/src/$b"
done
cp "$root/cpp/cuda/cuda_common.cuh" "$root/cpp/cuda/kernels.h" "$out/src/"
# The TF32 kernel runs on the fake wmma (fake_wmma.h), as on an sm_80 device.
sed -i 's|#include <mma.h>|#include "fake_wmma.h"|; s|#if defined(__CUDA_ARCH__) \&\& __CUDA_ARCH__ >= 800|#if 1|' "$out/src/gemm.cuh"
# Host C++ has no templated cudaFuncGetAttributes(kernel) overload: pass the address.
sed -i 's/cudaFuncGetAttributes(&attr, doubles_to_floats_kernel)/cudaFuncGetAttributes(\&attr, (const void*)doubles_to_floats_kernel)/' "$out/src/common.cpp"
pyinc=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
pbinc=$(python3 -c "import pybind11; print(pybind11.get_include())")
ext=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
cf=(-std=c++17 -O2 -fPIC -I"$cuda_inc" -I"$root/cpp" -DRESNET_CPP_CUDA_ARCHS=\"emulated\")
pids=()
for f in "$out"/src/*.cpp; do
  g++ "${cf[@]}" -include "$here/emu.h" -I"$out/src" -I"$here" -x c++ -c "$f" -o "$out/obj/$(basename "$f" .cpp).o" & pids+=($!)
done
g++ "${cf[@]}" -I"$here" -c "$here/emu.cpp" -o "$out/obj/emu_runtime.o" & pids+=($!)
g++ "${cf[@]}" -I"$here" -c "$here/fake_cudart.cpp" -o "$out/obj/fake_cudart.o" & pids+=($!)
# The real bindings (and the checker they share with _core), compiled as they are.
for f in "$root"/cpp/cuda/bindings/*.cpp "$root"/cpp/bindings/checks.cpp; do
  g++ "${cf[@]}" -I"$pyinc" -I"$pbinc" -I"$root/cpp/cuda" -c "$f" \
      -o "$out/obj/bind_$(basename "$f" .cpp).o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
cp -r "$root/python/resnet_cpp" "$out/pkg/"
rm -f "$out"/pkg/resnet_cpp/_cuda*
# Without a developer build of _core next to the sources, take the pip-installed one.
if ! ls "$out"/pkg/resnet_cpp/_core*.so >/dev/null 2>&1; then
  core=$(cd / && python3 -c "import resnet_cpp._core as c; print(c.__file__)")
  cp "$core" "$out/pkg/resnet_cpp/"
fi
g++ -shared -o "$out/pkg/resnet_cpp/_cuda$ext" "$out"/obj/*.o
echo "emulated _cuda: $out/pkg/resnet_cpp/_cuda$ext"
