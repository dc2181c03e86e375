// kernels.h: host entry points of the CUDA kernels (one .cu file per op family). Plain C++,
// included by the bindings (cpp/cuda/bindings/). Same conventions as the CPU core: activations NHWC float32,
// conv weights RSCK, outputs overwritten, every pointer is device memory. Each launcher is
// asynchronous on `stream` and throws std::runtime_error on a CUDA error, std::invalid_argument
// on a shape the kernels cannot take. Element counts must be <= INT32_MAX (bindings check).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common.h"
#include "pool.h"
#include "cuda_common.cuh"

namespace rc::cuda {

// conv.cu -- implicit GEMM, x (N,H,W,C), w (R,S,C,K), y/dy (N,P,Q,K).
void conv2d_forward(const float* x, const float* w, const float* b /*(K,) or null*/, float* y,
                    const ConvShape& s, cudaStream_t stream);
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s,
                          cudaStream_t stream);
void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db /*or null*/,
                            const ConvShape& s, cudaStream_t stream);

// batchnorm.cu -- x viewed as (M, C), M = N*H*W; per-channel vectors (C,). residual (M,C)
// or null is added before the ReLU: y = relu?(bn(x) + residual).
void batch_norm_forward_train(const float* x, const float* residual, const float* gamma,
                              const float* beta, float* running_mean, float* running_var, float* y,
                              float* mean, float* rstd, int64_t M, int64_t C, double momentum,
                              double eps, bool relu, cudaStream_t stream);
// mean/rstd (C,) or null: receive running_mean and 1/sqrt(running_var + eps).
void batch_norm_forward_eval(const float* x, const float* residual, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float* y, float* mean, float* rstd,
                             int64_t M, int64_t C, double eps, bool relu, cudaStream_t stream);
// beta non-null: the forward fused a ReLU; dy is masked where the recomputed pre-activation
// is <= 0. train=false: mean/rstd are the running statistics (frozen BN): dx = dy' * gamma *
// rstd. add (M,C) or null is summed into dx. dx may alias dy or x.
void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, const float* add, float* dx,
                         float* dgamma, float* dbeta, int64_t M, int64_t C, bool train,
                         cudaStream_t stream);

// eltwise.cu -- n elements, any shape.
void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
void relu_backward(const float* dy, const float* y, float* dx, int64_t n, cudaStream_t stream);
void add_forward(const float* a, const float* b, float* y, int64_t n, bool relu, cudaStream_t stream);
// Option-A shortcut: x (N,H,W,C) -> y (N,ceil(H/s),ceil(W/s),K), K >= C; the backward writes
// (or with accumulate adds) dx (N,H,W,C).
void shortcut_a_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t K, int64_t stride, cudaStream_t stream);
void shortcut_a_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t K, int64_t stride, bool accumulate, cudaStream_t stream);
void nchw_to_nhwc(const float* x, float* y, int64_t N, int64_t C, int64_t HW, cudaStream_t stream);
void nhwc_to_nchw(const float* x, float* y, int64_t N, int64_t C, int64_t HW, cudaStream_t stream);

// pool.cu -- x (N,H,W,C), y/argmax (N,P,Q,C), argmax = h*W+w of the first maximum in
// row-major window order. The backward gathers (deterministic, no atomics), so it needs the
// window geometry; argmax entries that match no input position contribute nothing.
void max_pool2d_forward(const float* x, float* y, int32_t* argmax, const PoolShape& s,
                        cudaStream_t stream);
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, const PoolShape& s,
                         cudaStream_t stream);
void global_avg_pool_forward(const float* x, float* y, int64_t N, int64_t HW, int64_t C,
                             cudaStream_t stream);
void global_avg_pool_backward(const float* dy, float* dx, int64_t N, int64_t HW, int64_t C,
                              cudaStream_t stream);

// linear.cu -- x (N,F), w (O,F), y (N,O) = x w^T + b.
void linear_forward(const float* x, const float* w, const float* b /*or null*/, float* y,
                    int64_t N, int64_t F, int64_t O, cudaStream_t stream);
void linear_backward(const float* dy, const float* x, const float* w, float* dx /*or null*/,
                     float* dw, float* db /*or null*/, int64_t N, int64_t F, int64_t O,
                     cudaStream_t stream);

// loss.cu -- logits (N,K), labels (N,) int32 or int64. Writes dlogits (N,K) (already / N), the
// mean loss to *loss (one float on the device) and the first row with a label outside [0,K)
// to *bad_row (INT32_MAX-like sentinel 0x7f7f7f7f when all are valid; such rows give NaN).
void softmax_cross_entropy(const float* logits, const void* labels, bool labels_int64,
                           int64_t N, int64_t K, double label_smoothing, float* dlogits,
                           float* loss, int32_t* bad_row, cudaStream_t stream);
constexpr int32_t kNoBadRow = 0x7f7f7f7f;

// optim.cu -- in place over n elements (PyTorch semantics, see tests/reference.py).
// lr_dev / step_dev (optional, one value in device memory) override lr / step when non-null,
// so a captured CUDA graph can follow an LR schedule and Adam's step count: the host
// rewrites the value between replays instead of re-capturing.
void sgd_step(float* p, const float* g, float* buf /*null iff momentum == 0*/, int64_t n,
              double lr, const float* lr_dev, double momentum, double weight_decay, bool nesterov,
              cudaStream_t stream);
void adam_step(float* p, const float* g, float* m, float* v, int64_t n, int64_t step,
               const int64_t* step_dev, double lr, const float* lr_dev, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled, cudaStream_t stream);

}  // namespace rc::cuda
