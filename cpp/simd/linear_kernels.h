// linear_kernels.h: the two GEMM shapes the linear layer needs, per ISA. Both write a
// (M,Nn) block of c (row stride ldc) and are called on tiles by cpp/linear.cpp's threads.
//   gemm_nt: c[i,j] = bias[j] + sum_k a[i*lda+k] * b[j*ldb+k]   (dot products; bias may be null)
//            forward: a = x (N,F), b = W (O,F).
//   gemm_nn: c[i,j] = sum_k a[i*ars+k*aks] * b[k*ldb+j]          (broadcast a, vector b)
//            dx: a = dy (N,O), b = W;  dw: a = dy^T (strided view), b = x.
// The per-element summation order depends only on K, never on the tile, so any thread
// split gives bitwise identical results.
#pragma once
#include <cstdint>

namespace rc {
#define RC_LINEAR_DECLS                                                                    \
    void gemm_nt(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t lda,            \
                 const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc);   \
    void gemm_nn(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t ars,            \
                 int64_t aks, const float* b, int64_t ldb, float* c, int64_t ldc);

namespace scalar { RC_LINEAR_DECLS }
#ifdef RESNET_CPP_HAVE_AVX2
namespace avx2 { RC_LINEAR_DECLS }
#endif
#ifdef RESNET_CPP_HAVE_AVX512
namespace avx512 { RC_LINEAR_DECLS }
#endif
#undef RC_LINEAR_DECLS
}  // namespace rc
