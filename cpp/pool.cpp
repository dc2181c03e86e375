// pool.cpp: max pooling (with argmax for backward) and global average pooling, NHWC.
// The scalar bodies come from simd/pool_body.h compiled at baseline flags; the same body is
// compiled per ISA in simd/pool_{avx2,avx512}.cpp (which add an intrinsics window scan for
// the max-pool forward). This file holds the implementation list.
#include "pool.h"

#include <cstdint>

#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {

namespace scalar {
namespace {
// No intrinsics at baseline: the body's generic loop scans every channel.
int64_t max_window_lead(float*, int32_t*, const float*, int64_t, int64_t, int64_t, int64_t,
                        int64_t, int64_t) {
    return 0;
}
}  // namespace
#include "simd/pool_body.h"
}  // namespace scalar

constexpr Impl<AnyCall, const PoolKernels*> kPool[] = {
    RC_IF_AVX512({"pool", Isa::avx512, nullptr, &avx512::pool})
    RC_IF_AVX2({"pool", Isa::avx2, nullptr, &avx2::pool})
    {"pool", Isa::scalar, nullptr, &scalar::pool},
};

void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const PoolShape& s) {
    pick(kPool).fn->max_pool2d_forward(y, argmax, x, s);
}

bool max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax, const PoolShape& s) {
    return pick(kPool).fn->max_pool2d_backward(dx, dy, argmax, s);
}

void global_avg_pool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C) {
    pick(kPool).fn->global_avg_pool_forward(y, x, N, HW, C);
}

void global_avg_pool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C) {
    pick(kPool).fn->global_avg_pool_backward(dx, dy, N, HW, C);
}

std::vector<OpImpls> pool_ops() {
    return any_call_ops(kPool, {"max_pool2d_forward", "max_pool2d_backward",
                                "global_avg_pool_forward", "global_avg_pool_backward"});
}

}  // namespace rc
