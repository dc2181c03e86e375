// pool.cpp: max pooling (with argmax for backward) and global average pooling, NHWC.
// The scalar bodies come from simd/pool_body.h compiled at baseline flags; the same body is
// compiled per ISA in simd/pool_{avx2,avx512}.cpp (which add an intrinsics window scan for
// the max-pool forward). This file only picks the path.
#include "pool.h"

#include <cstdint>

#include "dispatch.h"
#include "simd/pool_kernels.h"

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

// Calls rc::<isa>::fn(args...) for the active ISA (only paths compiled in).
#if defined(RESNET_CPP_HAVE_AVX512) && defined(RESNET_CPP_HAVE_AVX2)
#define RC_POOL_DISPATCH(fn, ...)                                  \
    switch (active_isa()) {                                        \
        case Isa::avx512: return avx512::fn(__VA_ARGS__);          \
        case Isa::avx2: return avx2::fn(__VA_ARGS__);              \
        default: return scalar::fn(__VA_ARGS__);                   \
    }
#elif defined(RESNET_CPP_HAVE_AVX512)
#define RC_POOL_DISPATCH(fn, ...)                                  \
    switch (active_isa()) {                                        \
        case Isa::avx512: return avx512::fn(__VA_ARGS__);          \
        default: return scalar::fn(__VA_ARGS__);                   \
    }
#elif defined(RESNET_CPP_HAVE_AVX2)
#define RC_POOL_DISPATCH(fn, ...)                                  \
    switch (active_isa()) {                                        \
        case Isa::avx2: return avx2::fn(__VA_ARGS__);              \
        default: return scalar::fn(__VA_ARGS__);                   \
    }
#else
#define RC_POOL_DISPATCH(fn, ...) return scalar::fn(__VA_ARGS__);
#endif

void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const PoolShape& s) {
    RC_POOL_DISPATCH(max_pool2d_forward, y, argmax, x, s)
}

bool max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax, const PoolShape& s) {
    RC_POOL_DISPATCH(max_pool2d_backward, dx, dy, argmax, s)
}

void global_avg_pool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C) {
    RC_POOL_DISPATCH(global_avg_pool_forward, y, x, N, HW, C)
}

void global_avg_pool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C) {
    RC_POOL_DISPATCH(global_avg_pool_backward, dx, dy, N, HW, C)
}

}  // namespace rc
