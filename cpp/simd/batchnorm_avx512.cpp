// batchnorm_avx512.cpp: AVX-512 primitives (16 lanes, masked tails) for the shared batch-norm
// body (batchnorm_body.h), exported as rc::avx512::batch_norm (simd/kernels.h).
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx512 {
namespace {

#include "simd/vec_avx512.h"
inline void vacc_double(double* d, V v) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), lo));
    _mm512_storeu_pd(d + 8, _mm512_add_pd(_mm512_loadu_pd(d + 8), hi));
}

}  // namespace

#include "batchnorm_body.h"

}  // namespace rc::avx512
