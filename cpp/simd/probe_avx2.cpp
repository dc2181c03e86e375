// probe_avx2.cpp: 12 independent FMA chains of 8 floats (latency 4 x throughput 1-2 needs
// >= 8 in flight on Zen 4; 12 leaves slack). Each iteration is 12 FMAs = 12*8*2 FLOP.
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx2 {

float fma_chains(int64_t iters) {
    __m256 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + 1e-3f * i);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; ++it)
        for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
    return [&]{ alignas(32) float t[8]; _mm256_store_ps(t, s); float r = 0; for (float v : t) r += v; return r; }();  // returned so the chains are not optimized away
}

const FmaProbe fma_probe = {fma_chains, 12 * 8 * 2};

}  // namespace rc::avx2
