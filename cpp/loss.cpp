// loss.cpp: softmax cross-entropy with label smoothing, forward and gradient in one call.
// Rows are independent: threads split rows, each row is read twice (max and sum_k z_k, then
// exp) while it sits in L1, and the per-row losses are summed in row order afterwards, so
// the loss does not depend on the thread count. Not vectorized by hand: N*K exps per step
// (128x1000 at most) cost well under a millisecond; this kernel is not on the hot path.
#include "loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {
namespace {

double softmax_xent(float* dlogits, const float* logits, const int64_t* labels, int64_t N,
                    int64_t K, double ls) {
    std::vector<double> row_loss((size_t)N);
    const double inv_n = 1.0 / (double)N;
    const float q_off = (float)(ls / (double)K * inv_n);  // smoothing mass per class, / N
    const float q_on = (float)((1.0 - ls) * inv_n);       // extra mass on the label, / N
#pragma omp parallel for schedule(static) if (N * K >= (1 << 14)) num_threads(rc::num_threads())
    for (int64_t n = 0; n < N; ++n) {
        const float* z = logits + n * K;
        float* d = dlogits + n * K;
        const int64_t y = labels[n];
        if (y < 0 || y >= K) {
            std::fill(d, d + K, std::numeric_limits<float>::quiet_NaN());
            row_loss[(size_t)n] = std::numeric_limits<double>::quiet_NaN();
            continue;
        }
        const float zy = z[y];  // read before d, which may be z itself, is written
        float m = z[0];
        double zsum = 0.0;
        for (int64_t k = 0; k < K; ++k) {
            m = z[k] > m ? z[k] : m;
            zsum += z[k];
        }
        // d holds exp(z - m) until the sum is known.
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) {
            const float e = std::exp(z[k] - m);
            d[k] = e;
            s += e;
        }
        const double lse = (double)m + std::log(s);
        // -sum_k q_k (z_k - lse) = lse - (1-ls) z_y - (ls/K) sum_k z_k
        row_loss[(size_t)n] = lse - (1.0 - ls) * (double)zy - ls / (double)K * zsum;
        const float scale = (float)(inv_n / s);
        for (int64_t k = 0; k < K; ++k) d[k] = d[k] * scale - q_off;
        d[y] -= q_on;
    }
    double total = 0.0;
    for (int64_t n = 0; n < N; ++n) total += row_loss[(size_t)n];
    return total * inv_n;
}

}  // namespace

namespace scalar {
const LossKernels loss = {softmax_xent};
}

constexpr Impl<AnyCall, const LossKernels*> kLoss[] = {
    {"softmax_xent", Isa::scalar, nullptr, &scalar::loss},
};

double softmax_cross_entropy(float* dlogits, const float* logits, const int64_t* labels,
                             int64_t N, int64_t K, double ls) {
    return pick(kLoss).fn->softmax_xent(dlogits, logits, labels, N, K, ls);
}

std::vector<OpImpls> loss_ops() { return any_call_ops(kLoss, {"softmax_cross_entropy"}); }

}  // namespace rc
