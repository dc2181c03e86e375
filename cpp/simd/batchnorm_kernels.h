// batchnorm_kernels.h: batch norm over NHWC activations viewed as (M, C), M = N*H*W rows.
// Two levels:
//  - rc::batch_norm_* (cpp/batchnorm.cpp): whole-tensor kernels that thread, combine
//    per-thread partials in float64 and dispatch on rc::active_isa();
//  - rc::<isa>::bn_* (one shared body, cpp/simd/batchnorm_body.h, compiled once per ISA):
//    single-thread range kernels over a flat slice of x that starts on a row whose flat
//    offset is a multiple of the pattern period P = lcm(C, 16). Per-channel vectors arrive
//    "expanded" to P floats (channel of element k is k % C), so every ISA vectorizes over the
//    flat array whatever C is (C=3 or 17 included), with one masked tail per slice.
#pragma once
#include <cstdint>

namespace rc {

// Training forward. x, y (M,C); residual (M,C) or nullptr; gamma, beta, running_mean,
// running_var, mean, rstd (C,). Normalizes with the biased batch variance, caches mean and
// rstd = 1/sqrt(var+eps), and updates running stats in place (unbiased variance, PyTorch
// momentum). Needs M > 1. y = relu?((x - mean) * gamma * rstd + beta [+ residual]): with a
// residual this is the ResNet block's BN + add + ReLU in one pass (the BN value is rounded
// before the add, so it equals the unfused ops bit for bit).
void batch_norm_forward_train(const float* x, const float* residual, const float* gamma,
                              const float* beta, float* running_mean, float* running_var, float* y,
                              float* mean, float* rstd, int64_t M, int64_t C, double momentum,
                              double eps, bool relu);

// Eval forward with running stats: y = relu?((x - rm) * gamma / sqrt(rv + eps) + beta
// [+ residual]).
void batch_norm_forward_eval(const float* x, const float* residual, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float* y, int64_t M, int64_t C, double eps,
                             bool relu);

// rstd[c] = 1/sqrt(running_var[c] + eps) rounded to float, as batch_norm_forward_eval
// scales with: the statistics an eval-mode backward takes (C,).
void batch_norm_running_rstd(const float* running_var, float* rstd, int64_t C, double eps);

// Backward. dy, x, dx (M,C); gamma, beta, mean, rstd, dgamma, dbeta (C,). relu: the forward
// fused a ReLU; dy is masked on the fly where the pre-activation (x - mean) * gamma * rstd +
// beta, recomputed from x exactly as the forward computed it, is not positive (so y is never
// read). train: mean/rstd are the cached batch stats and dx includes the batch-statistics
// terms; !train: they are the running stats (frozen BN) and dx = dy * gamma * rstd. add
// (M,C) or nullptr: another branch's gradient, dx += add in the same pass (a residual
// network's dx_main + dx_shortcut). dx may alias dy or x (each element is read before it is
// written), not add.
void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, bool relu, const float* add,
                         float* dx, float* dgamma, float* dbeta, int64_t M, int64_t C,
                         bool train);

// The two halves of each training pass, for a caller that sums the per-channel reductions
// across processes in between (synchronized BN; resnet_cpp.distributed):
//  forward_train = stats(x, pivot = x's row 0) -> finalize(count M) -> apply;
//  backward (train) = backward_reduce -> backward_apply(count M).
// stats: s1, s2 (C, float64) = per-channel sums of d = x - pivot and of d^2 over the M rows.
void batch_norm_stats(const float* x, const float* pivot, double* s1, double* s2, int64_t M,
                      int64_t C);
// From sums over `count` values (> 1): mean, rstd (C,) and the running stats' update, as
// the training forward does. pivot may alias running_mean.
void batch_norm_finalize(const double* s1, const double* s2, const float* pivot, double count,
                         float* running_mean, float* running_var, float* mean, float* rstd,
                         int64_t C, double momentum, double eps);
// y = relu?((x - mean) * gamma * rstd + beta [+ residual]), the training forward's pass 2.
void batch_norm_apply(const float* x, const float* residual, const float* gamma, const float* beta,
                      const float* mean, const float* rstd, float* y, int64_t M, int64_t C,
                      bool relu);
// sdy, sdyx (C, float64): sums of dy' and dy' * (x - mean) (dy' masked as in the backward);
// dgamma = sdyx * rstd and dbeta = sdy from these (local) sums.
void batch_norm_backward_reduce(const float* dy, const float* x, const float* gamma,
                                const float* beta, const float* mean, const float* rstd,
                                bool relu, double* sdy, double* sdyx, float* dgamma,
                                float* dbeta, int64_t M, int64_t C);
// dx of the training backward from sums sdy, sdyx over `count` values; add and aliasing as
// in batch_norm_backward.
void batch_norm_backward_apply(const float* dy, const float* x, const float* gamma,
                               const float* beta, const float* mean, const float* rstd, bool relu,
                               const float* add, const double* sdy, const double* sdyx,
                               double count, float* dx, int64_t M, int64_t C);

}  // namespace rc

// Range kernels, one set per ISA namespace. n = elements in the slice; P = pattern period;
// scratch = 2P floats of per-thread workspace (the reductions' float32 partial sums).
//  bn_stats:      s1[k] = sum (x - piv)[k + iP], s2[k] = sum of squares (k < P, float64 out)
//  bn_apply:      y = relu?((x - mean) * scale + beta + r), r (the residual) may be null
//  bn_bwd_reduce: sdy[k] = sum dy', sdyx[k] = sum dy' * (x - mean), dy' = dy masked where
//                 (x - mean) * k1 + beta <= 0 when beta != nullptr (the fused ReLU; k1 is
//                 the forward's scale); when dx != nullptr also writes dx = k1 * dy' (eval)
//  bn_bwd_apply:  dx = k1 * dy' + k2 * (x - mean) + k3 [+ r], r (flat) may be null
#define RC_BN_RANGE_KERNELS                                                                     \
    void bn_stats(const float* x, int64_t n, int64_t P, const float* piv, float* scratch,      \
                  double* s1, double* s2);                                                      \
    void bn_apply(const float* x, const float* r, float* y, int64_t n, int64_t P,              \
                  const float* mean, const float* scale, const float* beta, bool relu);         \
    void bn_bwd_reduce(const float* dy, const float* x, const float* beta, float* dx,          \
                       int64_t n, int64_t P, const float* mean, const float* k1,                \
                       float* scratch, double* sdy, double* sdyx);                              \
    void bn_bwd_apply(const float* dy, const float* x, const float* beta, const float* r,     \
                      float* dx, int64_t n, int64_t P, const float* mean, const float* k1,      \
                      const float* k2, const float* k3);

namespace rc::scalar {
RC_BN_RANGE_KERNELS
}
#ifdef RESNET_CPP_HAVE_AVX2
namespace rc::avx2 {
RC_BN_RANGE_KERNELS
}
#endif
#ifdef RESNET_CPP_HAVE_AVX512
namespace rc::avx512 {
RC_BN_RANGE_KERNELS
}
#endif
