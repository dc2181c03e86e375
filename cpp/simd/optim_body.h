// optim_body.h: the one source of the optimizer updates, included inside rc::scalar,
// rc::avx2 and rc::avx512 (optim.cpp / optim_avx2.cpp / optim_avx512.cpp; exported as
// `optim`, simd/kernels.h) so each TU's flags vectorize the loops. Element-wise, so results
// do not depend on the thread split. Threads only for large tensors: a parallel region costs microseconds, and most ResNet
// parameters are small. The including TU provides <cmath>, <cstdint>, "dispatch.h" and
// "simd/kernels.h".

namespace {
constexpr int64_t kParallelMin = 1 << 16;
}  // namespace

void sgd_step(float* p, const float* grad, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov) {
    if (momentum == 0.0f) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin) num_threads(rc::num_threads())
        for (int64_t i = 0; i < n; ++i) p[i] -= lr * (grad[i] + weight_decay * p[i]);
    } else if (nesterov) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin) num_threads(rc::num_threads())
        for (int64_t i = 0; i < n; ++i) {
            const float g = grad[i] + weight_decay * p[i];
            const float b = momentum * buf[i] + g;
            buf[i] = b;
            p[i] -= lr * (g + momentum * b);
        }
    } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMin) num_threads(rc::num_threads())
        for (int64_t i = 0; i < n; ++i) {
            const float b = momentum * buf[i] + grad[i] + weight_decay * p[i];
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

// p_scale = 1 - lr*wd for AdamW (else 1), wd_grad = wd for Adam's coupled decay (else 0),
// step_size = lr / (1 - b1^step), rsqrt_bc2 = 1 / sqrt(1 - b2^step).
void adam_update(float* p, const float* grad, float* m, float* v, int64_t n, float b1, float b2,
                 float step_size, float rsqrt_bc2, float eps, float wd_grad, float p_scale) {
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
#pragma omp parallel for schedule(static) if (n >= kParallelMin) num_threads(rc::num_threads())
    for (int64_t i = 0; i < n; ++i) {
        const float pi = p[i] * p_scale;
        const float g = grad[i] + wd_grad * p[i];
        const float mi = b1 * m[i] + c1 * g;
        const float vi = b2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (std::sqrt(vi) * rsqrt_bc2 + eps);
    }
}

const OptimKernels optim = {sgd_step, adam_update};
