// pool_kernels.h: per-ISA pooling entry points. The bodies are shared (pool_body.h), since
// pooling is memory-bound: the compiler vectorizes the channel loops for each ISA's flags.
#pragma once
#include <cstdint>

#include "pool.h"

namespace rc {
#define RC_POOL_DECLS                                                                        \
    void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const PoolShape& s); \
    bool max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax,              \
                             const PoolShape& s);                                            \
    void global_avg_pool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C); \
    void global_avg_pool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C);

namespace scalar { RC_POOL_DECLS }
#ifdef RESNET_CPP_HAVE_AVX2
namespace avx2 { RC_POOL_DECLS }
#endif
#ifdef RESNET_CPP_HAVE_AVX512
namespace avx512 { RC_POOL_DECLS }
#endif
#undef RC_POOL_DECLS
}  // namespace rc
