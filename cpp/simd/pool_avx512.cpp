// pool_avx512.cpp: the shared pooling bodies (pool_body.h) compiled with AVX-512 flags, plus
// the max-pool window scan in intrinsics: up to 4 zmm of running max and 4 of argmax stay
// in registers across the window (4 independent compare/blend chains hide their latency).
#include <immintrin.h>

#include <cstdint>

#include "dispatch.h"
#include "pool.h"
#include "simd/kernels.h"

namespace rc::avx512 {
namespace {

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

// NB blocks of 16 channels at xw (pixel stride C); `last` masks the final block's lanes.
// take = v > best or v is NaN: first maximum wins ties, NaN propagates (PyTorch).
template <int NB>
void max_window_zmm(float* yr, int32_t* ar, const float* xw, int64_t C, int64_t W, int64_t h0,
                    int64_t h1, int64_t w0, int64_t w1, __mmask16 last) {
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 best[NB];
    __m512i arg[NB];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
        best[b] = ninf;
        arg[b] = _mm512_set1_epi32((int32_t)(h0 * W + w0));
    }
    for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
            const float* xp = xw + (h * W + w) * C;
            const int32_t idx = (int32_t)(h * W + w);
#pragma GCC unroll 4
            for (int b = 0; b < NB; ++b) {
                const __mmask16 m = b == NB - 1 ? last : (__mmask16)0xFFFF;
                const __m512 v = _mm512_mask_loadu_ps(ninf, m, xp + 16 * b);
                const __mmask16 take = _mm512_cmp_ps_mask(v, best[b], _CMP_GT_OQ) |
                                       _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                best[b] = _mm512_mask_mov_ps(best[b], take, v);
                arg[b] = _mm512_mask_set1_epi32(arg[b], take, idx);
            }
        }
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
        const __mmask16 m = b == NB - 1 ? last : (__mmask16)0xFFFF;
        _mm512_mask_storeu_ps(yr + 16 * b, m, best[b]);
        _mm512_mask_storeu_epi32(ar + 16 * b, m, arg[b]);
    }
}

// All C channels of one output pixel, 64 at a time, then one masked group for the rest.
int64_t max_window_lead(float* yr, int32_t* ar, const float* xw, int64_t C, int64_t W,
                        int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
    int64_t c = 0;
    for (; c + 64 <= C; c += 64)
        max_window_zmm<4>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, 0xFFFF);
    const int64_t r = C - c;
    if (r == 0) return C;
    const int64_t nb = (r + 15) / 16;
    const __mmask16 last = tail_mask(r - 16 * (nb - 1));
    switch (nb) {
        case 4: max_window_zmm<4>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
        case 3: max_window_zmm<3>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
        case 2: max_window_zmm<2>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
        default: max_window_zmm<1>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
    }
    return C;
}

}  // namespace

#include "simd/pool_body.h"
}  // namespace rc::avx512
