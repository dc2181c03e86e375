// batchnorm.cu: batch norm over NHWC activations viewed as (M, C), M = N*H*W, with ReLU fused.
//   train forward: mean = sum x / M; var = sum (x - mean)^2 / M (two passes: no cancellation);
//                  rstd = 1/sqrt(var + eps); y = relu?((x - mean) * gamma * rstd + beta);
//                  running_mean/var updated in place (momentum, unbiased var * M/(M-1)).
//   eval forward:  y = relu?((x - running_mean) * gamma / sqrt(running_var + eps) + beta).
//   backward:      dy' = dy * (y > 0) if the ReLU was fused; dbeta = sum dy';
//                  dgamma = rstd * sum dy' (x - mean);
//                  train: dx = gamma*rstd * (dy' - dbeta/M - xhat*dgamma/M), xhat = (x-mean)*rstd
//                  eval (mean/rstd are the running stats): dx = dy' * gamma * rstd.
// The per-channel sums go through reduce.cuh (deterministic, double for the final adds).
#include "kernels.h"
#include "reduce.cuh"

namespace rc::cuda {
namespace {

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

// (dy', dy' * (x - mean)) with dy' masked by y > 0 when y is given.
struct BwdSums {
    const float* dy;
    const float* x;
    const float* y;
    const float* mean;
    int C;
    __device__ void operator()(int r, int c, float (&v)[2]) const {
        const int64_t i = (int64_t)r * C + c;
        float d = dy[i];
        if (y && !(y[i] > 0.0f)) d = 0.0f;
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

__global__ void bn_apply(const float* x, const float* gamma, const float* beta, const float* mean,
                         const float* rstd, float* y, int64_t n, int C, bool relu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        float v = (x[i] - mean[c]) * (gamma[c] * rstd[c]) + beta[c];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

__global__ void bn_apply_eval(const float* x, const float* gamma, const float* beta,
                              const float* rm, const float* rv, float* y, int64_t n, int C,
                              float eps, bool relu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const float scale = gamma[c] / sqrtf(rv[c] + eps);
        float v = (x[i] - rm[c]) * scale + beta[c];
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

__global__ void bn_dx(const float* dy, const float* x, const float* y, const float* gamma,
                      const float* mean, const float* rstd, const float* dgamma,
                      const float* dbeta, float* dx, int64_t n, int C, float inv_m, bool train) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        float d = dy[i];
        if (y && !(y[i] > 0.0f)) d = 0.0f;
        const float k = gamma[c] * rstd[c];
        if (train) {
            const float xhat = (x[i] - mean[c]) * rstd[c];
            dx[i] = k * (d - dbeta[c] * inv_m - xhat * dgamma[c] * inv_m);
        } else {
            dx[i] = k * d;
        }
    }
}

}  // namespace

void batch_norm_forward_train(const float* x, const float* gamma, const float* beta,
                              float* running_mean, float* running_var, float* y, float* mean,
                              float* rstd, int64_t M, int64_t C, double momentum, double eps,
                              bool relu, cudaStream_t stream) {
    const int m = (int)M, c = (int)C;
    Scratch total((size_t)C * sizeof(double), stream);
    column_sums<1>(Xval{x, c}, m, c, total.as<double>(), stream, "batch_norm_forward_train (mean)");
    doubles_to_floats(total.as<double>(), mean, c, 1.0 / (double)M, stream);
    column_sums<1>(SqDev{x, mean, c}, m, c, total.as<double>(), stream, "batch_norm_forward_train (var)");
    bn_finish_train<<<grid_for(C, 128), 128, 0, stream>>>(total.as<double>(), mean, rstd,
                                                          running_mean, running_var, c, (double)M,
                                                          momentum, eps);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_train (finish)");
    bn_apply<<<grid_for(M * C, 256), 256, 0, stream>>>(x, gamma, beta, mean, rstd, y, M * C, c, relu);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_train (apply)");
}

void batch_norm_forward_eval(const float* x, const float* gamma, const float* beta,
                             const float* running_mean, const float* running_var, float* y,
                             int64_t M, int64_t C, double eps, bool relu, cudaStream_t stream) {
    bn_apply_eval<<<grid_for(M * C, 256), 256, 0, stream>>>(x, gamma, beta, running_mean,
                                                            running_var, y, M * C, (int)C,
                                                            (float)eps, relu);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_forward_eval");
}

void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, const float* y, float* dx, float* dgamma, float* dbeta,
                         int64_t M, int64_t C, bool train, cudaStream_t stream) {
    const int m = (int)M, c = (int)C;
    Scratch sums((size_t)2 * C * sizeof(double), stream);
    column_sums<2>(BwdSums{dy, x, y, mean, c}, m, c, sums.as<double>(), stream,
                   "batch_norm_backward (sums)");
    bn_finish_bwd<<<grid_for(C, 128), 128, 0, stream>>>(sums.as<double>(), rstd, dgamma, dbeta, c);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_backward (finish)");
    bn_dx<<<grid_for(M * C, 256), 256, 0, stream>>>(dy, x, y, gamma, mean, rstd, dgamma, dbeta, dx,
                                                    M * C, c, (float)(1.0 / (double)M), train);
    RC_CUDA_LAUNCH_CHECK(stream, "batch_norm_backward (dx)");
}

}  // namespace rc::cuda
