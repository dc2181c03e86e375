// batchnorm.h: batch norm over NHWC activations viewed as (M, C), M = N*H*W rows
// (cpp/batchnorm.cpp). Whole-tensor kernels: they thread, combine per-thread partials in
// float64, and run the range kernels (simd/kernels.h, BatchNormKernels) of the first entry
// of their implementation list the active path allows.
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
// the training forward does. pivot must not alias running_mean.
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
