// batchnorm_avx2.cpp: AVX2+FMA primitives (8 lanes, maskload/maskstore tails) for the shared
// batch-norm body (batchnorm_body.h), exported as rc::avx2::batch_norm (simd/kernels.h).
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx2 {
namespace {

#include "simd/vec_avx2.h"
inline void vacc_double(double* d, V v) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    _mm256_storeu_pd(d, _mm256_add_pd(_mm256_loadu_pd(d), lo));
    _mm256_storeu_pd(d + 4, _mm256_add_pd(_mm256_loadu_pd(d + 4), hi));
}

}  // namespace

#include "batchnorm_body.h"

}  // namespace rc::avx2
