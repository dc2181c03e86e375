// optim.h: in-place optimizer updates over flat float32 arrays (cpp/optim.cpp), with
// PyTorch's torch.optim.SGD / Adam / AdamW semantics. Element-wise and memory-bound.
#pragma once
#include <cstdint>

namespace rc {

// g = grad + wd*p; buf = momentum*buf + g; g = nesterov ? g + momentum*buf : buf; p -= lr*g.
// With momentum == 0: p -= lr*(grad + wd*p) and buf is not used (may be null).
void sgd_step(float* p, const float* grad, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov);

// Adam (decoupled=false: g = grad + wd*p) or AdamW (decoupled=true: p *= 1 - lr*wd), then
// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// p -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps).   step >= 1.
void adam_step(float* p, const float* grad, float* m, float* v, int64_t n, int64_t step,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled);

}  // namespace rc
