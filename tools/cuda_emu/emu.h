// emu.h: CPU emulation of the CUDA execution model (tools/cuda_emu), force-included into the
// kernels compiled as C++. Each block's threads are ucontext fibers scheduled round-robin;
// __syncthreads and warp shuffles yield, so a missing barrier shows up as wrong results.
// __shared__ becomes static (blocks run one at a time). The fake device is sm_80; build.sh
// points the TF32 kernel at fake_wmma.h.
#pragma once
#include <cuda_runtime.h>
#include <ucontext.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <tuple>
#include <vector>

#undef __shared__
#define __shared__ static
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __align__
#define __align__(n) __attribute__((aligned(n)))

extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

void emu_yield();
float emu_shfl_xor(float v, int lane_mask);
// Runs a launch now, or records it while a stream capture is active (emu_capture_*).
void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body);
template <class F, class... A>
void emu_launch_args(dim3 grid, dim3 block, F kernel, A... args) {
    std::tuple<A...> t(args...);
    emu_launch(grid, block, [kernel, t] { std::apply(kernel, t); });
}

// Graph capture: while active, launches and async memsets/copies are recorded in order;
// end returns them as one replayable list.
bool emu_capturing();
void emu_capture_begin();
std::vector<std::function<void()>>* emu_capture_end();
void emu_record(std::function<void()> op);

inline void __syncthreads() { emu_yield(); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) { return emu_shfl_xor(v, lane_mask); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline void __trap() {
    std::fprintf(stderr, "__trap\n");
    std::abort();
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline int atomicMin(int* p, int v) {
    const int old = *p;
    if (v < old) *p = v;
    return old;
}
