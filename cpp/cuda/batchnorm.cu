// batchnorm.cu: batch norm over NHWC activations viewed as (M, C), M = N*H*W, with the
// ResNet join (+ residual) and ReLU fused, as the CPU kernels (cpp/batchnorm.cpp).
//   train forward: mean = sum x / M; var = sum (x - mean)^2 / M (two passes: no cancellation);
//                  rstd = 1/sqrt(var + eps); running_mean/var updated in place (momentum,
//                  unbiased var * M/(M-1)).
//   eval forward:  mean = running_mean, rstd = 1/sqrt(running_var + eps) (rounded to float
//                  first, as the CPU), optionally written out for an eval-mode backward.
//   both:          y = relu?(bn_pre(x) [+ residual]), bn_pre = fma(x - mean, gamma*rstd, beta)
//   backward:      dy' = dy masked where bn_pre(x) <= 0 if the ReLU was fused (recomputed from
//                  x with the same bn_pre, so the mask is the forward's bit for bit);
//                  dbeta = sum dy'; dgamma = rstd * sum dy' (x - mean);
//                  train: dx = gamma*rstd * (dy' - dbeta/M - xhat*dgamma/M), xhat = (x-mean)*rstd
//                  eval (mean/rstd are the running stats): dx = dy' * gamma * rstd;
//                  dx += add (another branch's gradient). dx may alias dy or x: each element is
//                  read before it is written, and the sums pass has finished before.
// The per-channel sums go through reduce.cuh (deterministic, double for the final adds).
#include "kernels.h"
#include "reduce.cuh"

namespace rc::cuda {
namespace {

// The normalized value before the residual and the ReLU; the backward recomputes it.
__device__ __forceinline__ float bn_pre(float x, float mean, float scale, float beta) {
    return fmaf(x - mean, scale, beta);
}

struct Xval {
    const float* x;
    int C;
    __device__ void operator()(int r, int c, float (&v)[1]) const { v[0] = x[(int64_t)r * C + c]; }
};

struct SqDev {
    const float* x;
    const float* mean;
    int C;
    __device__ void operator()(int r, int c, float (&v)[1]) const {
        const float d = x[(int64_t)r * C + c] - mean[c];
        v[0] = d * d;
    }
};

// dy' for element i of channel c: dy masked by the recomputed ReLU when beta is given.
__device__ __forceinline__ float masked_dy(const float* dy, const float* x, const float* gamma,
                                           const float* beta, const float* mean,
                                           const float* rstd, int64_t i, int c) {
    const float d = dy[i];
    if (beta && !(bn_pre(x[i], mean[c], gamma[c] * rstd[c], beta[c]) > 0.0f)) return 0.0f;
    return d;
}

// (dy', dy' * (x - mean)).
struct BwdSums {
    const float *dy, *x, *gamma, *beta, *mean, *rstd;
    int C;
    __device__ void operator()(int r, int c, float (&v)[2]) const {
        const int64_t i = (int64_t)r * C + c;
        const float d = masked_dy(dy, x, gamma, beta, mean, rstd, i, c);
        v[0] = d;
        v[1] = d * (x[i] - mean[c]);
    }
};

__global__ void bn_finish_train(const double* sq, const float* mean, float* rstd, float* rm,
                                float* rv, int C, double M, double momentum, double eps) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        const double var = sq[c] / M;
        rstd[c] = (float)(1.0 / sqrt(var + eps));
        rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * mean[c]);
        rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * var * M / (M - 1.0));
    }
}

__global__ void bn_running_stats(const float* rm, const float* rv, float* mean, float* rstd,
                                 int C, double eps) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        mean[c] = rm[c];
        rstd[c] = (float)(1.0 / sqrt((double)rv[c] + eps));
    }
}

__global__ void bn_apply(const float* x, const float* res, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, float* y, int64_t n, int C,
                         bool relu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        float v = bn_pre(x[i], mean[c], gamma[c] * rstd[c], beta[c]);
        if (res) v += res[i];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

__global__ void bn_finish_bwd(const double* sums, const float* rstd, float* dgamma, float* dbeta,
                              int C) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        dbeta[c] = (float)sums[c];
        dgamma[c] = (float)(sums[C + c] * (double)rstd[c]);
    }
}

__global__ void bn_dx(const float* dy, const float* x, const float* gamma, const float* beta,
                      const float* mean, const float* rstd, const float* dgamma,
                      const float* dbeta, const float* add, float* dx, int64_t n, int C,
                      float inv_m, bool train) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const float d = masked_dy(dy, x, gamma, beta, mean, rstd, i, c);
        const float k = gamma[c] * rstd[c];
        float v;
        if (train) {
            const float xhat = (x[i] - mean[c]) * rstd[c];
            v = k * (d - dbeta[c] * inv_m - xhat * dgamma[c] * inv_m);
        } else {
            v = k * d;
        }
        dx[i] = add ? v + add[i] : v;
    }
}

}  // namespace

void batch_norm_forward_train(const float* x, const float* residual, const float* gamma,
                              const float* beta, float* running_mean, float* running_var, float* y,
                              float* mean, float* rstd, int64_t M, int64_t C, double momentum,
                              double eps, bool relu, cudaStream_t stream) {
    const int m = (int)M, c = (int)C;
    Scratch total((size_t)C * sizeof(double));
    column_sums<1>(Xval{x, c}, m, c, total.as<double>(), stream, "batch_norm_forward_train (mean)");
    doubles_to_floats(total.as<double>(), mean, c, 1.0 / (double)M, stream);
    column_sums<1>(SqDev{x, mean, c}, m, c, total.as<double>(), stream, "batch_norm_forward_train (var)");
    bn_finish_train<<<grid_for(C, 128), 128, 0, stream>>>(total.as<double>(), mean, rstd,
                                                          running_mean, running_var, c, (double)M,
                                                          momentum, eps);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_train (finish)");
    bn_apply<<<grid_for(M * C, 256), 256, 0, stream>>>(x, residual, gamma, beta, mean, rstd, y,
                                                       M * C, c, relu);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_train (apply)");
}

void batch_norm_forward_eval(const float* x, const float* residual, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float* y, float* mean, float* rstd,
                             int64_t M, int64_t C, double eps, bool relu, cudaStream_t stream) {
    Scratch stats(mean && rstd ? 0 : (size_t)2 * C * sizeof(float));
    if (!mean || !rstd) {
        mean = stats.as<float>();
        rstd = mean + C;
    }
    bn_running_stats<<<grid_for(C, 128), 128, 0, stream>>>(running_mean, running_var, mean, rstd,
                                                           (int)C, eps);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_eval (stats)");
    bn_apply<<<grid_for(M * C, 256), 256, 0, stream>>>(x, residual, gamma, beta, mean, rstd, y,
                                                       M * C, (int)C, relu);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_eval (apply)");
}

void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, const float* add, float* dx,
                         float* dgamma, float* dbeta, int64_t M, int64_t C, bool train,
                         cudaStream_t stream) {
    const int m = (int)M, c = (int)C;
    Scratch sums((size_t)2 * C * sizeof(double));
    column_sums<2>(BwdSums{dy, x, gamma, beta, mean, rstd, c}, m, c, sums.as<double>(), stream,
                   "batch_norm_backward (sums)");
    bn_finish_bwd<<<grid_for(C, 128), 128, 0, stream>>>(sums.as<double>(), rstd, dgamma, dbeta, c);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_backward (finish)");
    bn_dx<<<grid_for(M * C, 256), 256, 0, stream>>>(dy, x, gamma, beta, mean, rstd, dgamma, dbeta,
                                                    add, dx, M * C, c, (float)(1.0 / (double)M),
                                                    train);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_backward (dx)");
}

}  // namespace rc::cuda
