// eltwise.h: ReLU, residual add (+ReLU), the option-A shortcut and NCHW<->NHWC layout
// conversion (cpp/eltwise.cpp). Whole-tensor kernels: they split the flat array across
// threads and run the range kernels (simd/kernels.h, EltwiseKernels) of the first entry of
// their implementation list the active path allows.
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
