// linear_avx2.cpp: AVX2+FMA GEMM micro-kernels for the linear layer, exported as
// rc::avx2::linear (simd/kernels.h).
// gemm_nn keeps a 6-row x 16-column block of c in 12 ymm accumulators (2 loads of b and 6
// broadcasts per 12 FMAs; 15 of the 16 ymm registers). gemm_nt keeps a 3x3 block of dot
// products (9 ymm). Column/k tails use vmaskmov loads/stores, which never touch masked lanes.
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx2 {
namespace {

// Lanes [0, n) set (n clamped to 8).
inline __m256i tail_mask(int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n)), lane);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template <int MR, int NV>
void micro_nn(int64_t K, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb,
              float* c, int64_t ldc, __m256i m0, __m256i m1) {
    __m256 acc[MR][NV];
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float* bk = b + k * ldb;
        __m256 bv[NV];
        bv[0] = _mm256_maskload_ps(bk, m0);
        if (NV > 1) bv[NV - 1] = _mm256_maskload_ps(bk + 8, m1);
        const float* ak = a + k * aks;
#pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
            const __m256 av = _mm256_broadcast_ss(ak + r * ars);
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
        _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
        if (NV > 1) _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][NV - 1]);
    }
}

template <int NV>
void rows_nn(int64_t M, int64_t K, const float* a, int64_t ars, int64_t aks, const float* b,
             int64_t ldb, float* c, int64_t ldc, __m256i m0, __m256i m1) {
    int64_t i = 0;
    for (; i + 6 <= M; i += 6) micro_nn<6, NV>(K, a + i * ars, ars, aks, b, ldb, c + i * ldc, ldc, m0, m1);
    const float* ai = a + i * ars;
    float* ci = c + i * ldc;
    switch (M - i) {
        case 5: micro_nn<5, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 4: micro_nn<4, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 3: micro_nn<3, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 2: micro_nn<2, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 1: micro_nn<1, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        default: break;
    }
}

template <int MR, int NR>
void micro_nt(int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
              const float* bias, float* c, int64_t ldc) {
    __m256 acc[MR][NR];
#pragma GCC unroll 3
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 3
        for (int s = 0; s < NR; ++s) acc[r][s] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        const __m256i m = tail_mask(K - k);
        __m256 bv[NR];
#pragma GCC unroll 3
        for (int s = 0; s < NR; ++s) bv[s] = _mm256_maskload_ps(b + s * ldb + k, m);
#pragma GCC unroll 3
        for (int r = 0; r < MR; ++r) {
            const __m256 av = _mm256_maskload_ps(a + r * lda + k, m);
#pragma GCC unroll 3
            for (int s = 0; s < NR; ++s) acc[r][s] = _mm256_fmadd_ps(av, bv[s], acc[r][s]);
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 3
        for (int s = 0; s < NR; ++s) c[r * ldc + s] = hsum(acc[r][s]) + (bias ? bias[s] : 0.0f);
}

template <int NR>
void rows_nt(int64_t M, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
             const float* bias, float* c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 3 <= M; i += 3) micro_nt<3, NR>(K, a + i * lda, lda, b, ldb, bias, c + i * ldc, ldc);
    const float* ai = a + i * lda;
    float* ci = c + i * ldc;
    switch (M - i) {
        case 2: micro_nt<2, NR>(K, ai, lda, b, ldb, bias, ci, ldc); break;
        case 1: micro_nt<1, NR>(K, ai, lda, b, ldb, bias, ci, ldc); break;
        default: break;
    }
}

}  // namespace

void gemm_nn(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t ars, int64_t aks,
             const float* b, int64_t ldb, float* c, int64_t ldc) {
    const __m256i full = _mm256_set1_epi32(-1);
    for (int64_t j = 0; j < Nn; j += 16) {
        const int64_t nc = Nn - j < 16 ? Nn - j : 16;
        if (nc > 8)
            rows_nn<2>(M, K, a, ars, aks, b + j, ldb, c + j, ldc, full, tail_mask(nc - 8));
        else
            rows_nn<1>(M, K, a, ars, aks, b + j, ldb, c + j, ldc, tail_mask(nc), full);
    }
}

void gemm_nt(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t lda, const float* b,
             int64_t ldb, const float* bias, float* c, int64_t ldc) {
    for (int64_t j = 0; j < Nn; j += 3) {
        const float* bj = b + j * ldb;
        const float* biasj = bias ? bias + j : nullptr;
        switch (Nn - j < 3 ? Nn - j : 3) {
            case 3: rows_nt<3>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
            case 2: rows_nt<2>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
            default: rows_nt<1>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
        }
    }
}

const LinearKernels linear = {gemm_nt, gemm_nn};

}  // namespace rc::avx2
