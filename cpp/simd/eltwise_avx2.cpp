// eltwise_avx2.cpp: AVX2 primitives (8 lanes, maskload/maskstore tails) for the shared elementwise body
// (eltwise_body.h); exports rc::avx2::ew_* (declared in eltwise_kernels.h).
#include <immintrin.h>

#include "eltwise_kernels.h"

namespace rc::avx2 {
namespace {

constexpr int64_t VL = 8;
using V = __m256;

inline __m256i first_n(int64_t n) {  // lanes < n all-ones
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline V vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V vloadn(const float* p, int64_t n) { return _mm256_maskload_ps(p, first_n(n)); }
inline void vstoren(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, first_n(n), v); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
// max(0, v) returns v when v is NaN (MAXPS returns its second operand), as PyTorch does.
inline V vrelu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
inline V vmask_pos(V v, V y) {
    return _mm256_and_ps(v, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
}

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
