// optim.cu: in-place optimizer updates, one thread per element (PyTorch semantics).
//   SGD (dampening 0):  g' = g + wd * p;  buf = momentum * buf + g';
//                       p -= lr * (nesterov ? g' + momentum * buf : buf)   (momentum > 0)
//                       p -= lr * g'                                        (momentum = 0)
//   Adam / AdamW:       AdamW first p *= 1 - lr * wd, Adam adds wd * p to g;
//                       m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//                       p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// The bias corrections 1 - b^t are computed in double: on the host for a host step count,
// once per thread from the device value otherwise (graph replays with a changing step).
#include <cmath>

#include "kernels.h"

namespace rc::cuda {
namespace {

__global__ void sgd_kernel(float* p, const float* g, float* buf, int64_t n, float lr,
                           const float* lr_dev, float momentum, float wd, bool nesterov) {
    if (lr_dev) lr = *lr_dev;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i] + wd * p[i];
        if (buf) {
            const float b = momentum * buf[i] + gi;
            buf[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] -= lr * gi;
    }
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                            const float* lr_dev, float b1, float b2, float eps, float wd,
                            bool decoupled, float bc1, float bc2, const int64_t* step_dev) {
    if (lr_dev) lr = *lr_dev;
    if (step_dev) {
        const double t = (double)*step_dev;
        bc1 = (float)(1.0 - pow((double)b1, t));
        bc2 = (float)(1.0 - pow((double)b2, t));
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float pi = p[i], gi = g[i];
        if (decoupled) pi *= 1.0f - lr * wd;
        else gi += wd * pi;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}

}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, const float* lr_dev,
              double momentum, double weight_decay, bool nesterov, cudaStream_t stream) {
    sgd_kernel<<<grid_for(n, 256), 256, 0, stream>>>(p, g, momentum != 0.0 ? buf : nullptr, n,
                                                     (float)lr, lr_dev, (float)momentum,
                                                     (float)weight_decay, nesterov);
    RC_CUDA_LAUNCH_CHECK(stream, "sgd_step");
}

void adam_step(float* p, const float* g, float* m, float* v, int64_t n, int64_t step,
               const int64_t* step_dev, double lr, const float* lr_dev, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled, cudaStream_t stream) {
    const double bc1 = 1.0 - std::pow(beta1, (double)step);
    const double bc2 = 1.0 - std::pow(beta2, (double)step);
    adam_kernel<<<grid_for(n, 256), 256, 0, stream>>>(p, g, m, v, n, (float)lr, lr_dev,
                                                      (float)beta1, (float)beta2, (float)eps,
                                                      (float)weight_decay, decoupled, (float)bc1,
                                                      (float)bc2, step_dev);
    RC_CUDA_LAUNCH_CHECK(stream, "adam_step");
}

}  // namespace rc::cuda
