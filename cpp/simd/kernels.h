// simd/kernels.h: the kernels each ISA path exports, declared once. Per op family, a set of
// function pointers (the contract between its driver in cpp/<family>.cpp and the code
// compiled per ISA; a family with one function uses the function itself); per ISA
// namespace, the sets its translation units define: rc::scalar in the baseline files,
// rc::avx2 / rc::avx512 / rc::avx512_bf16 in cpp/simd/*_<isa>.cpp. Every entry of an
// implementation list (registry.h) is one of these; a list references a path's kernels only
// where the build compiles that path (RC_IF_AVX2 etc.).
#pragma once
#include <cstdint>

#include "common.h"
#include "pool.h"

namespace rc {

// Convolution by one algorithm, NHWC activations and RSCK weights (conv.h); all overwrite
// their outputs, b/db may be null.
struct ConvKernels {
    void (*forward)(const float* x, const float* w, const float* b, float* y, const ConvShape& s);
    void (*backward_data)(const float* dy, const float* w, float* dx, const ConvShape& s);
    void (*backward_weight)(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s);
};

// Batch-norm range kernels (simd/batchnorm_body.h): single-thread, over a flat slice of
// (M, C) that starts on a row whose flat offset is a multiple of the pattern period
// P = lcm(C, 16). Per-channel vectors arrive expanded to P floats (channel of element k is
// k % C), so every ISA vectorizes over the flat array whatever C is, with one masked tail.
// n = elements in the slice; scratch = 2P floats of per-thread workspace.
//  stats:      s1[k] = sum (x - piv)[k + iP], s2[k] = sum of squares (k < P, float64 out)
//  apply:      y = relu?((x - mean) * scale + beta + r), r (the residual) may be null
//  bwd_reduce: sdy[k] = sum dy', sdyx[k] = sum dy' * (x - mean), dy' = dy masked where
//              (x - mean) * k1 + beta <= 0 when beta != nullptr (the fused ReLU; k1 is the
//              forward's scale); when dx != nullptr also writes dx = k1 * dy' (eval)
//  bwd_apply:  dx = k1 * dy' + k2 * (x - mean) + k3 [+ r], r (flat) may be null
struct BatchNormKernels {
    void (*stats)(const float* x, int64_t n, int64_t P, const float* piv, float* scratch,
                  double* s1, double* s2);
    void (*apply)(const float* x, const float* r, float* y, int64_t n, int64_t P,
                  const float* mean, const float* scale, const float* beta, bool relu);
    void (*bwd_reduce)(const float* dy, const float* x, const float* beta, float* dx, int64_t n,
                       int64_t P, const float* mean, const float* k1, float* scratch,
                       double* sdy, double* sdyx);
    void (*bwd_apply)(const float* dy, const float* x, const float* beta, const float* r,
                      float* dx, int64_t n, int64_t P, const float* mean, const float* k1,
                      const float* k2, const float* k3);
};

// Elementwise range kernels (simd/eltwise_body.h): single-thread, over a flat slice.
//  transpose: for one image A (R, K) -> B (K, R), writes rows [k0, k1) of B.
struct EltwiseKernels {
    void (*relu)(const float* x, float* y, int64_t n);
    void (*mask)(const float* dy, const float* y, float* dx, int64_t n);
    void (*add)(const float* a, const float* b, float* y, int64_t n, bool relu);
    void (*transpose)(const float* A, float* B, int64_t R, int64_t K, int64_t k0, int64_t k1);
};

// Pooling, the whole op as pool.h describes it (simd/pool_body.h: memory-bound, so one
// source the compiler vectorizes per ISA, plus an intrinsics window scan).
struct PoolKernels {
    void (*max_pool2d_forward)(float* y, int32_t* argmax, const float* x, const PoolShape& s);
    bool (*max_pool2d_backward)(float* dx, const float* dy, const int32_t* argmax,
                                const PoolShape& s);
    void (*global_avg_pool_forward)(float* y, const float* x, int64_t N, int64_t HW, int64_t C);
    void (*global_avg_pool_backward)(float* dx, const float* dy, int64_t N, int64_t HW,
                                     int64_t C);
};

// The linear layer's two GEMM shapes; both write a (M,Nn) block of c (row stride ldc) and
// are called on tiles by cpp/linear.cpp's threads.
//   gemm_nt: c[i,j] = bias[j] + sum_k a[i*lda+k] * b[j*ldb+k]   (dot products; bias may be null)
//            forward: a = x (N,F), b = W (O,F).
//   gemm_nn: c[i,j] = sum_k a[i*ars+k*aks] * b[k*ldb+j]          (broadcast a, vector b)
//            dx: a = dy (N,O), b = W;  dw: a = dy^T (strided view), b = x.
// The per-element summation order depends only on K, never on the tile, so any thread
// split gives bitwise identical results.
struct LinearKernels {
    void (*gemm_nt)(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t lda,
                    const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc);
    void (*gemm_nn)(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t ars, int64_t aks,
                    const float* b, int64_t ldb, float* c, int64_t ldc);
};

// Optimizer updates (simd/optim_body.h); sgd_step as optim.h describes it, adam_update with
// the step scalars optim.cpp computes.
struct OptimKernels {
    void (*sgd_step)(float* p, const float* grad, float* buf, int64_t n, float lr,
                     float momentum, float weight_decay, bool nesterov);
    void (*adam_update)(float* p, const float* grad, float* m, float* v, int64_t n, float b1,
                        float b2, float step_size, float rsqrt_bc2, float eps, float wd_grad,
                        float p_scale);
};

// The option-A shortcut, as eltwise.h describes it.
struct ShortcutKernels {
    void (*forward)(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
                    int64_t K, int64_t stride);
    void (*backward)(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                     int64_t K, int64_t stride, bool accumulate);
};

// Softmax cross-entropy, as loss.h describes it (the binding copies labels to int64).
struct LossKernels {
    double (*softmax_xent)(float* dlogits, const float* logits, const int64_t* labels, int64_t N,
                           int64_t K, double ls);
};

// The FMA peak probe (probe.h): `iters` iterations of independent FMA chains on one thread,
// returning a value that depends on them; each iteration is flop_per_iter FLOP.
struct FmaProbe {
    float (*fma_chains)(int64_t iters);
    int flop_per_iter;
};

#define RC_ISA_KERNELS                                                                     \
    extern const ConvKernels conv_direct;                                                  \
    extern const BatchNormKernels batch_norm;                                              \
    extern const EltwiseKernels eltwise;                                                   \
    extern const PoolKernels pool;                                                         \
    extern const LinearKernels linear;                                                     \
    extern const OptimKernels optim;                                                       \
    extern const FmaProbe fma_probe;

namespace scalar {  // conv.cpp (direct loops: the reference), batchnorm.cpp, eltwise.cpp, ...
RC_ISA_KERNELS
extern const ShortcutKernels shortcut_a;                  // eltwise.cpp
extern const LossKernels loss;                            // loss.cpp
void random_crop_flip(float* y, const float* x, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t padding, bool flip, uint64_t seed, bool channels_last,
                      int64_t first_index);  // augment.h
void round_to_bf16(const float* x, float* y, int64_t n);  // conv_bf16.cpp, as conv.h's
}
namespace avx2 {  // simd/*_avx2.cpp
RC_ISA_KERNELS
extern const ConvKernels conv_winograd2, conv_winograd4;  // simd/winograd.h
}
namespace avx512 {  // simd/*_avx512.cpp
RC_ISA_KERNELS
extern const ConvKernels conv_winograd2, conv_winograd4;
}
namespace avx512_bf16 {  // simd/conv_avx512_bf16.cpp
extern const ConvKernels conv_bf16;  // bf16 operands, fp32 sums (direct convolution)
void round_to_bf16(const float* x, float* y, int64_t n);  // as conv.h's, by vcvtneps2bf16
}
#undef RC_ISA_KERNELS

}  // namespace rc
