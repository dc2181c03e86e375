#!/usr/bin/env bash
# The kernels under the sanitizers (CI runs `tools/sanitize.sh`; README "Hardening"):
#   asan: _core built with AddressSanitizer + UndefinedBehaviorSanitizer (any finding aborts),
#         over the parity suite at small shapes on every ISA path and thread count (the
#         isa_threads fixture), the boundary tests and the bounded fuzz run;
#   tsan: _core built with ThreadSanitizer and OpenMP off, over the tests that call kernels
#         from several Python threads at once (on separate arrays). libgomp is not built with
#         TSan, so its barriers are invisible to it and every parallel region would be
#         reported as a race. The GIL is invisible to it too (CPython hands it over with
#         uninstrumented atomics), so the tests that share an array between Python threads on
#         purpose (test_boundary's "changed_by_another") are left to the ASan run.
#   tools/sanitize.sh [asan|tsan]...     (default: both)
# Each build goes to build/<name>/ with a copy of the Python package; the installed or
# developer _core is not touched. Needs g++ with libasan/libubsan/libtsan, cmake, ninja.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

build() {  # name, sanitizers, OpenMP on/off
  local out="$root/build/$1"
  rm -rf "$out/pkg" && mkdir -p "$out/pkg"
  cp -r python/resnet_cpp "$out/pkg/" && rm -f "$out"/pkg/resnet_cpp/_core*.so "$out"/pkg/resnet_cpp/_cuda*.so
  # Tests that cross-check with PyTorch skip: torch under a preloaded sanitizer runtime is
  # slow and not what is being checked.
  mkdir -p "$out/pkg/torch" && echo 'raise ImportError("not under the sanitizers")' > "$out/pkg/torch/__init__.py"
  cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESNET_CPP_SANITIZE="$2" \
        -DRESNET_CPP_OPENMP="$3" -DRESNET_CPP_OUTPUT_DIR="$out/pkg/resnet_cpp" >/dev/null
  cmake --build "$out"
}

run_asan() {
  build asan address,undefined ON
  local start=$SECONDS
  # Python itself is not instrumented: the runtime is preloaded (with libstdc++, whose
  # __cxa_throw ASan must find at start to intercept C++ exceptions), leak checks are off
  # (the interpreter keeps its objects at exit), and an error aborts with a report.
  LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  PYTHONPATH=build/asan/pkg python3 -m pytest -q --capture=sys -m "not slow" -p no:cacheprovider \
      tests/test_conv.py tests/test_batchnorm.py tests/test_eltwise.py tests/test_pool.py \
      tests/test_linear.py tests/test_loss.py tests/test_optim_kernels.py tests/test_augment.py \
      tests/test_bindings.py tests/test_dispatch.py tests/test_boundary.py tests/test_fuzz.py \
      -k "not failed_allocation"  # an address-space limit starves ASan's shadow memory
  echo "asan+ubsan tests: $((SECONDS - start)) s"
}

run_tsan() {
  build tsan thread OFF
  local start=$SECONDS
  LD_PRELOAD="$(g++ -print-file-name=libtsan.so) $(g++ -print-file-name=libstdc++.so)" TSAN_OPTIONS=halt_on_error=1:exitcode=66 \
  PYTHONPATH=build/tsan/pkg python3 -m pytest -q --capture=sys -p no:cacheprovider \
      -k "concurrent or thread_safety" tests/test_boundary.py tests/test_conv.py \
      tests/test_eltwise.py tests/test_batchnorm.py tests/test_pool.py tests/test_linear.py \
      tests/test_loss.py tests/test_optim_kernels.py tests/test_augment.py
  echo "tsan tests: $((SECONDS - start)) s"
}

for w in ${@:-asan tsan}; do "run_$w"; done
