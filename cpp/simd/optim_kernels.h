// optim_kernels.h: per-ISA optimizer bodies (one source, optim_body.h, compiled per ISA:
// the updates are memory-bound and the compiler vectorizes them well).
#pragma once
#include <cstdint>

namespace rc {
#define RC_OPTIM_DECLS                                                                       \
    void sgd_step(float* p, const float* grad, float* buf, int64_t n, float lr,             \
                  float momentum, float weight_decay, bool nesterov);                        \
    void adam_update(float* p, const float* grad, float* m, float* v, int64_t n, float b1,  \
                     float b2, float step_size, float rsqrt_bc2, float eps, float wd_grad,   \
                     float p_scale);

namespace scalar { RC_OPTIM_DECLS }
#ifdef RESNET_CPP_HAVE_AVX2
namespace avx2 { RC_OPTIM_DECLS }
#endif
#ifdef RESNET_CPP_HAVE_AVX512
namespace avx512 { RC_OPTIM_DECLS }
#endif
#undef RC_OPTIM_DECLS
}  // namespace rc
