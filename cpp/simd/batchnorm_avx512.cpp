// batchnorm_avx512.cpp: AVX-512 primitives (16 lanes, masked tails) for the shared batch-norm
// body (batchnorm_body.h); exports rc::avx512::bn_* (declared in batchnorm_kernels.h).
#include <immintrin.h>

#include "batchnorm_kernels.h"

namespace rc::avx512 {
namespace {

constexpr int64_t VL = 16;
using V = __m512;

inline __mmask16 first_n(int64_t n) { return (__mmask16)((1u << n) - 1u); }  // 1 <= n <= 16
inline V vzero() { return _mm512_setzero_ps(); }
inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V vloadn(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(first_n(n), p); }
inline void vstoren(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, first_n(n), v); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
// max(0, v) returns v when v is NaN (MAXPS returns its second operand), as PyTorch does.
inline V vrelu(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
inline V vmask_pos(V v, V y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), v);
}
inline void vacc_double(double* d, V v) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), lo));
    _mm512_storeu_pd(d + 8, _mm512_add_pd(_mm512_loadu_pd(d + 8), hi));
}

}  // namespace

#include "batchnorm_body.h"

}  // namespace rc::avx512
