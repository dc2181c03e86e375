// optim.cpp: SGD (momentum, Nesterov, weight decay) and Adam/AdamW updates, in place.
// The loops live in simd/optim_body.h (compiled here at baseline flags and per ISA in
// simd/optim_{avx2,avx512}.cpp); this file computes the step scalars and picks the path.
#include "optim.h"

#include <cmath>
#include <cstdint>

#include "dispatch.h"
#include "simd/optim_kernels.h"

namespace rc {

namespace scalar {
#include "simd/optim_body.h"
}  // namespace scalar

void sgd_step(float* p, const float* grad, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov) {
    switch (active_isa()) {
#ifdef RESNET_CPP_HAVE_AVX512
        case Isa::avx512: return avx512::sgd_step(p, grad, buf, n, lr, momentum, weight_decay, nesterov);
#endif
#ifdef RESNET_CPP_HAVE_AVX2
        case Isa::avx2: return avx2::sgd_step(p, grad, buf, n, lr, momentum, weight_decay, nesterov);
#endif
        default: return scalar::sgd_step(p, grad, buf, n, lr, momentum, weight_decay, nesterov);
    }
}

void adam_step(float* p, const float* grad, float* m, float* v, int64_t n, int64_t step,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled) {
    // Bias corrections in double: 1 - beta2^step is tiny for small steps (1e-3 at step 1).
    const double bc1 = 1.0 - std::pow(beta1, (double)step);
    const double bc2 = 1.0 - std::pow(beta2, (double)step);
    const float step_size = (float)(lr / bc1), rsqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
    const float wd_grad = decoupled ? 0.0f : (float)weight_decay;
    const float p_scale = decoupled ? (float)(1.0 - lr * weight_decay) : 1.0f;
    const float b1 = (float)beta1, b2 = (float)beta2, e = (float)eps;
    switch (active_isa()) {
#ifdef RESNET_CPP_HAVE_AVX512
        case Isa::avx512:
            return avx512::adam_update(p, grad, m, v, n, b1, b2, step_size, rsqrt_bc2, e, wd_grad, p_scale);
#endif
#ifdef RESNET_CPP_HAVE_AVX2
        case Isa::avx2:
            return avx2::adam_update(p, grad, m, v, n, b1, b2, step_size, rsqrt_bc2, e, wd_grad, p_scale);
#endif
        default:
            return scalar::adam_update(p, grad, m, v, n, b1, b2, step_size, rsqrt_bc2, e, wd_grad, p_scale);
    }
}

}  // namespace rc
