// probe_avx512.cpp: 12 independent FMA chains of 16 floats (latency 4 x throughput 1-2 needs
// >= 8 in flight on Zen 4; 12 leaves slack). Each iteration is 12 FMAs = 12*16*2 FLOP.
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx512 {

float fma_chains(int64_t iters) {
    __m512 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + 1e-3f * i);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; ++it)
        for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);  // returned so the chains are not optimized away
}

const FmaProbe fma_probe = {fma_chains, 12 * 16 * 2};

}  // namespace rc::avx512
