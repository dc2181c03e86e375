// optim.cpp: SGD (momentum, Nesterov, weight decay) and Adam/AdamW updates, in place.
// The loops live in simd/optim_body.h (compiled here at baseline flags and per ISA in
// simd/optim_{avx2,avx512}.cpp); this file computes the step scalars and holds the
// implementation list.
#include "optim.h"

#include <cmath>
#include <cstdint>

#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {

namespace scalar {
#include "simd/optim_body.h"
}  // namespace scalar

constexpr Impl<AnyCall, const OptimKernels*> kOptim[] = {
    RC_IF_AVX512({"optim", Isa::avx512, nullptr, &avx512::optim})
    RC_IF_AVX2({"optim", Isa::avx2, nullptr, &avx2::optim})
    {"optim", Isa::scalar, nullptr, &scalar::optim},
};

void sgd_step(float* p, const float* grad, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov) {
    pick(kOptim).fn->sgd_step(p, grad, buf, n, lr, momentum, weight_decay, nesterov);
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
    pick(kOptim).fn->adam_update(p, grad, m, v, n, b1, b2, step_size, rsqrt_bc2, e, wd_grad, p_scale);
}

std::vector<OpImpls> optim_ops() { return any_call_ops(kOptim, {"sgd_step", "adam_step"}); }

}  // namespace rc
