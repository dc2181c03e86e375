// probe.cpp: measures this machine's FP32 FMA peak (GFLOP/s) on the active ISA path and
// thread count, so benchmarks report "% of peak" from a measurement, not a datasheet.
#include "probe.h"

#include <chrono>

#include "common.h"
#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

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

namespace scalar {
const FmaProbe fma_probe = {fma_chains_scalar, 8 * 2};  // 8 chains x 1 lane x (mul + add)
}

constexpr Impl<AnyCall, const FmaProbe*> kProbe[] = {
    RC_IF_AVX512({"fma_chains", Isa::avx512, nullptr, &avx512::fma_probe})
    RC_IF_AVX2({"fma_chains", Isa::avx2, nullptr, &avx2::fma_probe})
    {"fma_chains", Isa::scalar, nullptr, &scalar::fma_probe},
};

double fma_peak_gflops(int64_t iters) {
    RC_CHECK(iters >= 1, "iters: expected an integer >= 1");
    const FmaProbe& probe = *pick(kProbe).fn;
    int threads = num_threads();
    double sink = 0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += probe.fma_chains(iters);
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile double keep = sink;
    (void)keep;
    return probe.flop_per_iter * (double)iters * threads / sec * 1e-9;
}

std::vector<OpImpls> probe_ops() { return any_call_ops(kProbe, {"fma_peak_gflops"}); }

}  // namespace rc
