// eltwise_kernels.h: ReLU, residual add (+ReLU) and NCHW<->NHWC layout conversion.
//  - rc::* (cpp/eltwise.cpp): whole-tensor kernels that split the flat array across threads
//    and dispatch on rc::active_isa();
//  - rc::<isa>::ew_* (one shared body, cpp/simd/eltwise_body.h, compiled once per ISA):
//    single-thread kernels over a flat slice, vectorized with one masked tail.
#pragma once
#include <cstdint>

namespace rc {

// y = max(x, 0) over n elements (any shape). NaN maps to 0.
void relu_forward(const float* x, float* y, int64_t n);
// dx = dy * (y > 0): the backward of relu, and of add_relu for both of its inputs.
void relu_backward(const float* dy, const float* y, float* dx, int64_t n);
// y = a + b, or relu(a + b) when relu (the residual join of a ResNet block).
void add_forward(const float* a, const float* b, float* y, int64_t n, bool relu);
// Option-A shortcut (He et al. 2015), NHWC: x (N,H,W,C) -> y (N,Ho,Wo,K), Ho = ceil(H/stride),
// y[n,i,j,lo:lo+C] = x[n,i*stride,j*stride,:] with lo = (K-C)/2, zeros in the other K-C
// channels. Needs K >= C.
void shortcut_a_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t K, int64_t stride);
// Its backward: dx (N,H,W,C) at the stride grid gets dy[..., lo:lo+C], elsewhere 0; with
// accumulate, dx += that instead (the residual sum dx_main + dx_shortcut in one pass).
void shortcut_a_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t K, int64_t stride, bool accumulate);
// x (N, C, HW) -> y (N, HW, C) and back; threaded, cache-blocked transposes.
void nchw_to_nhwc(const float* x, float* y, int64_t N, int64_t C, int64_t HW);
void nhwc_to_nchw(const float* x, float* y, int64_t N, int64_t C, int64_t HW);

}  // namespace rc

// ew_transpose: for one image A (R, K) -> B (K, R), writes rows [k0, k1) of B.
#define RC_EW_RANGE_KERNELS                                                     \
    void ew_relu(const float* x, float* y, int64_t n);                          \
    void ew_mask(const float* dy, const float* y, float* dx, int64_t n);        \
    void ew_add(const float* a, const float* b, float* y, int64_t n, bool relu);    \
    void ew_transpose(const float* A, float* B, int64_t R, int64_t K, int64_t k0, int64_t k1);

namespace rc::scalar {
RC_EW_RANGE_KERNELS
}
#ifdef RESNET_CPP_HAVE_AVX2
namespace rc::avx2 {
RC_EW_RANGE_KERNELS
}
#endif
#ifdef RESNET_CPP_HAVE_AVX512
namespace rc::avx512 {
RC_EW_RANGE_KERNELS
}
#endif
