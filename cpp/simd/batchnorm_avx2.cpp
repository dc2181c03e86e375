// batchnorm_avx2.cpp: AVX2+FMA primitives (8 lanes, maskload/maskstore tails) for the shared
// batch-norm body (batchnorm_body.h); exports rc::avx2::bn_* (declared in batchnorm_kernels.h).
#include <immintrin.h>

#include "batchnorm_kernels.h"

namespace rc::avx2 {
namespace {

constexpr int64_t VL = 8;
using V = __m256;

inline __m256i first_n(int64_t n) {  // lanes < n all-ones
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline V vzero() { return _mm256_setzero_ps(); }
inline V vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V vloadn(const float* p, int64_t n) { return _mm256_maskload_ps(p, first_n(n)); }
inline void vstoren(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, first_n(n), v); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
// max(0, v) returns v when v is NaN (MAXPS returns its second operand), as PyTorch does.
inline V vrelu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
inline V vmask_pos(V v, V y) {
    return _mm256_and_ps(v, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
}
inline void vacc_double(double* d, V v) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    _mm256_storeu_pd(d, _mm256_add_pd(_mm256_loadu_pd(d), lo));
    _mm256_storeu_pd(d + 4, _mm256_add_pd(_mm256_loadu_pd(d + 4), hi));
}

}  // namespace

#include "batchnorm_body.h"

}  // namespace rc::avx2
