// eltwise_avx2.cpp: AVX2 primitives (8 lanes, maskload/maskstore tails) for the shared elementwise body
// (eltwise_body.h), exported as rc::avx2::eltwise (simd/kernels.h).
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx2 {
namespace {

#include "simd/vec_avx2.h"

// 8 x 8 transpose in registers: 32-bit interleaves, 64-bit shuffles, 128-bit lane swaps.
inline void tile8(const float* a, int64_t lda, float* b, int64_t ldb) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(a + i * lda);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(b + i * ldb, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(b + (i + 4) * ldb, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

// 16 x 16 tile as four 8 x 8 ones.
inline void tile16(const float* a, int64_t lda, float* b, int64_t ldb) {
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 16; j += 8) tile8(a + i * lda + j, lda, b + j * ldb + i, ldb);
}

}  // namespace

#include "eltwise_body.h"

}  // namespace rc::avx2
