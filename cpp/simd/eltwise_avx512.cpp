// eltwise_avx512.cpp: AVX-512 primitives (16 lanes, masked tails) for the shared elementwise body
// (eltwise_body.h), exported as rc::avx512::eltwise (simd/kernels.h).
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx512 {
namespace {

#include "simd/vec_avx512.h"

// 16 x 16 transpose in registers: 32-bit then 64-bit interleaves, then two 128-bit lane
// shuffles (0x88 picks lanes 0,2 of each source, 0xdd lanes 1,3).
inline void tile16(const float* a, int64_t lda, float* b, int64_t ldb) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(a + i * lda);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; ++i) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(b + i * ldb, r[i]);
}

}  // namespace

#include "eltwise_body.h"

}  // namespace rc::avx512
