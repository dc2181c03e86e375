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

}  // namespace rc
