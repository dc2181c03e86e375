// pool.h: max pooling and global average pooling entry points (cpp/pool.cpp).
// Activations are NHWC float32, C-contiguous. Each runs the first entry of pool.cpp's
// implementation list (registry.h) the active path allows.
#pragma once
#include <cstdint>

namespace rc {

// Max-pool geometry: x is (N,H,W,C), y and argmax are (N,P,Q,C); square k x k window.
struct PoolShape {
    int64_t N, H, W, C;
    int64_t k, stride, pad;
    int64_t P, Q;
};

inline PoolShape make_pool_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k,
                                 int64_t stride, int64_t pad) {
    PoolShape s{N, H, W, C, k, stride, pad, 0, 0};
    s.P = (H + 2 * pad - k) / stride + 1;
    s.Q = (W + 2 * pad - k) / stride + 1;
    return s;
}

// y = max over each window (-inf padding); argmax = flat h*W+w of the first maximum in
// row-major window order (PyTorch's tie rule; a NaN counts as the maximum, as in PyTorch).
// Needs pad <= k/2 so no window is all padding.
void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const PoolShape& s);
// dx (N,H,W,C) = scatter-add of dy into argmax positions; overwrites dx. Returns false
// (leaving dx partly written) if any argmax entry lies outside [0, H*W).
bool max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax, const PoolShape& s);

// y (N,C) = mean of x (N,H,W,C) over H*W.
void global_avg_pool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C);
// dx (N,H,W,C) = dy (N,C) / (H*W) broadcast over H*W.
void global_avg_pool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C);

}  // namespace rc
