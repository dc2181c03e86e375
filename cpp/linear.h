// linear.h: fully connected layer entry points (cpp/linear.cpp). y = x W^T + b with
// x (N,F), W (O,F) (PyTorch's nn.Linear layout), b (O,). No BLAS: register-blocked kernels.
#pragma once
#include <cstdint>

namespace rc {

// y (N,O) = x (N,F) W^T + b; b may be null.
void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N,
                    int64_t F, int64_t O);
// dx (N,F) = dy W (skipped if dx is null); dw (O,F) = dy^T x; db (O,) = sum_n dy (skipped if
// db is null). All overwritten. Each output element is computed by one thread in a fixed
// order, so results are bitwise identical for any thread count.
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t N, int64_t F, int64_t O);

}  // namespace rc
