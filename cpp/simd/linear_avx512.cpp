// linear_avx512.cpp: AVX-512 GEMM micro-kernels for the linear layer, exported as
// rc::avx512::linear (simd/kernels.h).
// gemm_nn keeps an 8-row x 32-column block of c in 16 zmm accumulators: per k, 2 loads of
// b and 8 broadcasts of a feed 16 FMAs. gemm_nt keeps a 4x4 block of dot products (16 zmm,
// one per output, reduced over 16 k-lanes at the end). Column/k tails use masked loads.
#include <immintrin.h>

#include "simd/kernels.h"

namespace rc::avx512 {
namespace {

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

// c (MR x up to 16*NV) = a-block x b-panel; m0/m1 mask the two column vectors.
template <int MR, int NV>
void micro_nn(int64_t K, const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb,
              float* c, int64_t ldc, __mmask16 m0, __mmask16 m1) {
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float* bk = b + k * ldb;
        __m512 bv[NV];
        bv[0] = _mm512_maskz_loadu_ps(m0, bk);
        if (NV > 1) bv[NV - 1] = _mm512_maskz_loadu_ps(m1, bk + 16);
        const float* ak = a + k * aks;
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m512 av = _mm512_set1_ps(ak[r * ars]);
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        if (NV > 1) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][NV - 1]);
    }
}

template <int NV>
void rows_nn(int64_t M, int64_t K, const float* a, int64_t ars, int64_t aks, const float* b,
             int64_t ldb, float* c, int64_t ldc, __mmask16 m0, __mmask16 m1) {
    int64_t i = 0;
    for (; i + 8 <= M; i += 8) micro_nn<8, NV>(K, a + i * ars, ars, aks, b, ldb, c + i * ldc, ldc, m0, m1);
    const float* ai = a + i * ars;
    float* ci = c + i * ldc;
    switch (M - i) {
        case 7: micro_nn<7, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 6: micro_nn<6, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 5: micro_nn<5, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 4: micro_nn<4, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 3: micro_nn<3, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 2: micro_nn<2, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        case 1: micro_nn<1, NV>(K, ai, ars, aks, b, ldb, ci, ldc, m0, m1); break;
        default: break;
    }
}

// MR x NR dot products of length K: rows of a against rows of b.
template <int MR, int NR>
void micro_nt(int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
              const float* bias, float* c, int64_t ldc) {
    __m512 acc[MR][NR];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int s = 0; s < NR; ++s) acc[r][s] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 m = tail_mask(K - k);
        __m512 bv[NR];
#pragma GCC unroll 4
        for (int s = 0; s < NR; ++s) bv[s] = _mm512_maskz_loadu_ps(m, b + s * ldb + k);
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
            const __m512 av = _mm512_maskz_loadu_ps(m, a + r * lda + k);
#pragma GCC unroll 4
            for (int s = 0; s < NR; ++s) acc[r][s] = _mm512_fmadd_ps(av, bv[s], acc[r][s]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int s = 0; s < NR; ++s)
            c[r * ldc + s] = _mm512_reduce_add_ps(acc[r][s]) + (bias ? bias[s] : 0.0f);
}

template <int NR>
void rows_nt(int64_t M, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
             const float* bias, float* c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) micro_nt<4, NR>(K, a + i * lda, lda, b, ldb, bias, c + i * ldc, ldc);
    const float* ai = a + i * lda;
    float* ci = c + i * ldc;
    switch (M - i) {
        case 3: micro_nt<3, NR>(K, ai, lda, b, ldb, bias, ci, ldc); break;
        case 2: micro_nt<2, NR>(K, ai, lda, b, ldb, bias, ci, ldc); break;
        case 1: micro_nt<1, NR>(K, ai, lda, b, ldb, bias, ci, ldc); break;
        default: break;
    }
}

}  // namespace

void gemm_nn(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t ars, int64_t aks,
             const float* b, int64_t ldb, float* c, int64_t ldc) {
    // Column panels outer: the K x 32 panel of b stays in L2 while all rows of a pass.
    for (int64_t j = 0; j < Nn; j += 32) {
        const int64_t nc = Nn - j < 32 ? Nn - j : 32;
        if (nc > 16)
            rows_nn<2>(M, K, a, ars, aks, b + j, ldb, c + j, ldc, 0xFFFF, tail_mask(nc - 16));
        else
            rows_nn<1>(M, K, a, ars, aks, b + j, ldb, c + j, ldc, tail_mask(nc), 0);
    }
}

void gemm_nt(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t lda, const float* b,
             int64_t ldb, const float* bias, float* c, int64_t ldc) {
    // Rows of b outer: a 4 x K block of b stays in L1/L2 while all rows of a pass.
    for (int64_t j = 0; j < Nn; j += 4) {
        const float* bj = b + j * ldb;
        const float* biasj = bias ? bias + j : nullptr;
        switch (Nn - j < 4 ? Nn - j : 4) {
            case 4: rows_nt<4>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
            case 3: rows_nt<3>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
            case 2: rows_nt<2>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
            default: rows_nt<1>(M, K, a, lda, bj, ldb, biasj, c + j, ldc); break;
        }
    }
}

const LinearKernels linear = {gemm_nt, gemm_nn};

}  // namespace rc::avx512
