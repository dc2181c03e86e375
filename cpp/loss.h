// loss.h: softmax cross-entropy entry points (cpp/loss.cpp).
#pragma once
#include <cstdint>

namespace rc {

// logits (N,K), labels (N,), smoothing ls in [0,1). A row whose label is outside [0,K)
// gets NaN gradients and a NaN loss (callers check labels first to raise instead). Target q = (1-ls) * onehot(label) + ls/K. Writes dlogits (N,K) = (softmax - q) / N and
// returns the mean over the batch of -sum_k q_k log softmax_k. Each row is max-subtracted
// (log-sum-exp), so logits of any finite size give finite results. dlogits may be logits
// itself (each row is read before it is written).
double softmax_cross_entropy(float* dlogits, const float* logits, const int64_t* labels,
                             int64_t N, int64_t K, double ls);

}  // namespace rc
