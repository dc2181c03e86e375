// pool_avx2.cpp: the shared pooling bodies (pool_body.h) compiled with AVX2 flags, plus the
// max-pool window scan in intrinsics: up to 4 ymm of running max and 4 of argmax stay in
// registers across the window; vmaskmov handles a channel tail without touching past it.
#include <immintrin.h>

#include <cstdint>

#include "dispatch.h"
#include "pool.h"
#include "simd/kernels.h"

namespace rc::avx2 {
namespace {

// Lanes [0, n) set (n clamped to 8).
inline __m256i tail_mask(int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n)), lane);
}

// NB blocks of 8 channels at xw (pixel stride C); `last` masks the final block's lanes
// (masked lanes compute garbage that is never stored). take = v > best or v is NaN.
template <int NB>
void max_window_ymm(float* yr, int32_t* ar, const float* xw, int64_t C, int64_t W, int64_t h0,
                    int64_t h1, int64_t w0, int64_t w1, __m256i last) {
    const __m256i full = _mm256_set1_epi32(-1);
    __m256 best[NB], arg[NB];  // arg holds int32 indices in float registers (blendv)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
        best[b] = _mm256_set1_ps(-__builtin_inff());
        arg[b] = _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(h0 * W + w0)));
    }
    for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
            const float* xp = xw + (h * W + w) * C;
            const __m256 idx = _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(h * W + w)));
#pragma GCC unroll 4
            for (int b = 0; b < NB; ++b) {
                const __m256 v = _mm256_maskload_ps(xp + 8 * b, b == NB - 1 ? last : full);
                const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best[b], _CMP_GT_OQ),
                                                 _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                best[b] = _mm256_blendv_ps(best[b], v, take);
                arg[b] = _mm256_blendv_ps(arg[b], idx, take);
            }
        }
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
        const __m256i m = b == NB - 1 ? last : full;
        _mm256_maskstore_ps(yr + 8 * b, m, best[b]);
        _mm256_maskstore_epi32(ar + 8 * b, m, _mm256_castps_si256(arg[b]));
    }
}

// All C channels of one output pixel, 32 at a time, then one masked group for the rest.
int64_t max_window_lead(float* yr, int32_t* ar, const float* xw, int64_t C, int64_t W,
                        int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
    const __m256i full = _mm256_set1_epi32(-1);
    int64_t c = 0;
    for (; c + 32 <= C; c += 32)
        max_window_ymm<4>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, full);
    const int64_t r = C - c;
    if (r == 0) return C;
    const int64_t nb = (r + 7) / 8;
    const __m256i last = tail_mask(r - 8 * (nb - 1));
    switch (nb) {
        case 4: max_window_ymm<4>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
        case 3: max_window_ymm<3>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
        case 2: max_window_ymm<2>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
        default: max_window_ymm<1>(yr + c, ar + c, xw + c, C, W, h0, h1, w0, w1, last); break;
    }
    return C;
}

}  // namespace

#include "simd/pool_body.h"
}  // namespace rc::avx2
