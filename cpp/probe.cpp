// probe.cpp: measures this machine's FP32 FMA peak (GFLOP/s) on the active ISA path and
// thread count, so benchmarks report "% of peak" from a measurement, not a datasheet.
#include "probe.h"

#include <chrono>

#include "common.h"
#include "dispatch.h"
#include "simd/probe_kernels.h"

namespace rc {

namespace {
// Scalar fallback: 8 independent chains so the compiler's baseline code is not latency-bound.
float fma_chains_scalar(int64_t iters) {
    float a[8];
    for (int i = 0; i < 8; ++i) a[i] = 1.0f + 1e-3f * i;
    for (int64_t it = 0; it < iters; ++it)
        for (int i = 0; i < 8; ++i) a[i] = a[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (float v : a) s += v;
    return s;
}
}  // namespace

double fma_peak_gflops(int64_t iters) {
    RC_CHECK(iters >= 1, "iters: expected an integer >= 1");
    Isa isa = active_isa();
    double flop_per_iter = 8 * 2;  // scalar: 8 chains x 1 lane x (mul + add)
    if (isa == Isa::avx512) flop_per_iter = 12 * 16 * 2;
    if (isa == Isa::avx2) flop_per_iter = 12 * 8 * 2;
    int threads = num_threads();
    double sink = 0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        switch (isa) {
#ifdef RESNET_CPP_HAVE_AVX512
            case Isa::avx512: sink += avx512::fma_chains(iters); break;
#endif
#ifdef RESNET_CPP_HAVE_AVX2
            case Isa::avx2: sink += avx2::fma_chains(iters); break;
#endif
            default: sink += fma_chains_scalar(iters);
        }
    }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile double keep = sink;
    (void)keep;
    return flop_per_iter * (double)iters * threads / sec * 1e-9;
}

}  // namespace rc
