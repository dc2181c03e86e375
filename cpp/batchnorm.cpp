// batchnorm.cpp: batch norm over NHWC activations seen as (M, C), M = N*H*W (batchnorm.h).
// Holds the baseline (scalar) instance of the shared range kernels, the implementation list,
// and the whole-tensor drivers: threads take contiguous row slices, each writes float64
// partial sums to its own 64-byte-padded slot, and the slots are combined in a fixed order (deterministic
// for a given thread count). Train forward = one statistics pass + one apply pass; train
// backward = one reduction pass + one dx pass; eval forward/backward = one pass each.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "batchnorm.h"
#include "common.h"
#include "dispatch.h"
#include "eltwise.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc::scalar {
namespace {

#include "simd/vec_scalar.h"
inline void vacc_double(double* d, V v) { *d += v; }

}  // namespace

#include "simd/batchnorm_body.h"

}  // namespace rc::scalar

namespace rc {
namespace {

// Below this many elements per thread the fork/join costs more than the pass (~64 KiB).
constexpr int64_t kMinPerThread = 16384;

// Row slices for the threads. Slices start on multiples of q = P / C rows so that every
// slice starts at a pattern-period boundary (flat offset multiple of P).
struct RowSplit {
    int64_t M, q, units;
    int nt;
    RowSplit(int64_t M_, int64_t C, int64_t P) : M(M_), q(P / C) {
        units = (M + q - 1) / q;
        int64_t want = (M * C) / kMinPerThread;
        want = want < 1 ? 1 : want;
        int64_t n = num_threads();
        n = n < want ? n : want;
        nt = (int)(n < units ? n : units);
    }
    int64_t begin(int t) const {
        int64_t base = units / nt, extra = units % nt;
        int64_t r = (t * base + (t < extra ? t : extra)) * q;
        return r < M ? r : M;
    }
    int64_t end(int t) const { return begin(t + 1); }
};

// The pattern period: lcm(C, 16) is a multiple of every ISA's vector width.
int64_t pattern_period(int64_t C) { return std::lcm(C, (int64_t)16); }

// out[k] = v[k % C] for k < P.
void expand(const float* v, int64_t C, int64_t P, float* out) {
    for (int64_t k = 0; k < P; ++k) out[k] = v[k % C];
}

// k expanded per-channel vectors of P floats. Consecutive vectors are staggered by 128 bytes
// so that, for P a multiple of 1024, element j of each does not fall in the same L1 set
// (4 KiB aliasing) as element j of the others.
class Patterns {
  public:
    Patterns(int k, int64_t P) : stride_(P + 32), buf_((size_t)k * (P + 32)) {}
    float* operator[](int i) { return buf_.data() + (size_t)i * stride_; }

  private:
    int64_t stride_;
    AlignedBuffer buf_;
};

// Per-thread slots: two float64 P-vectors of partial sums, then 2P floats of kernel scratch.
// A slot is 6P floats, a multiple of 64 bytes (P is a multiple of 16), so threads never
// share a cache line.
class Partials {
  public:
    Partials(int nt, int64_t P) : P_(P), buf_((size_t)nt * 6 * P) {}
    double* a(int t) { return reinterpret_cast<double*>(buf_.data() + (size_t)t * 6 * P_); }
    double* b(int t) { return a(t) + P_; }
    float* scratch(int t) { return buf_.data() + (size_t)t * 6 * P_ + 4 * P_; }
    // Sums slot vectors over threads (in order) and over pattern positions k = c (mod C).
    void combine(int nt, int64_t C, double* sa, double* sb) {
        for (int64_t c = 0; c < C; ++c) sa[c] = sb[c] = 0.0;
        for (int t = 0; t < nt; ++t)
            for (int64_t k = 0; k < P_; ++k) {
                sa[k % C] += a(t)[k];
                sb[k % C] += b(t)[k];
            }
    }

  private:
    int64_t P_;
    AlignedBuffer buf_;  // per slot: 2P doubles (as 4P floats), then 2P floats
};

constexpr Impl<AnyCall, const BatchNormKernels*> kBatchNorm[] = {
    RC_IF_AVX512({"batch_norm", Isa::avx512, nullptr, &avx512::batch_norm})
    RC_IF_AVX2({"batch_norm", Isa::avx2, nullptr, &avx2::batch_norm})
    {"batch_norm", Isa::scalar, nullptr, &scalar::batch_norm},
};

}  // namespace

void batch_norm_stats(const float* x, const float* pivot, double* s1, double* s2, int64_t M,
                      int64_t C) {
    const BatchNormKernels& k = *pick(kBatchNorm).fn;
    const int64_t P = pattern_period(C);
    const RowSplit split(M, C, P);
    const int nt = split.nt;
    Patterns pat(1, P);
    expand(pivot, C, P, pat[0]);
    Partials part(nt, P);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; ++t) {
        const int64_t r0 = split.begin(t), r1 = split.end(t);
        k.stats(x + r0 * C, (r1 - r0) * C, P, pat[0], part.scratch(t), part.a(t), part.b(t));
    }
    part.combine(nt, C, s1, s2);
}

void batch_norm_finalize(const double* s1, const double* s2, const float* pivot, double count,
                         float* running_mean, float* running_var, float* mean, float* rstd,
                         int64_t C, double momentum, double eps) {
    for (int64_t c = 0; c < C; ++c) {
        const double d = s1[c] / count;
        const double var = std::max(s2[c] / count - d * d, 0.0);  // biased
        const double m = pivot[c] + d, r = 1.0 / std::sqrt(var + eps);
        // pivot[c] is read above, so pivot may be running_mean itself.
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
        running_var[c] =
            (float)((1.0 - momentum) * running_var[c] + momentum * var * count / (count - 1));
        mean[c] = (float)m;
        rstd[c] = (float)r;
    }
}

void batch_norm_apply(const float* x, const float* residual, const float* gamma, const float* beta,
                      const float* mean, const float* rstd, float* y, int64_t M, int64_t C,
                      bool relu) {
    const BatchNormKernels& k = *pick(kBatchNorm).fn;
    const int64_t P = pattern_period(C);
    const RowSplit split(M, C, P);
    Patterns pat(3, P);
    float *mean_e = pat[0], *scale_e = pat[1], *beta_e = pat[2];
    for (int64_t j = 0; j < P; ++j) {
        const int64_t c = j % C;
        mean_e[j] = mean[c];
        // From the cached (rounded) rstd: the backward rebuilds this scale for the ReLU mask.
        scale_e[j] = (float)(gamma[c] * (double)rstd[c]);
        beta_e[j] = beta[c];
    }
#pragma omp parallel for schedule(static) num_threads(split.nt)
    for (int t = 0; t < split.nt; ++t) {
        const int64_t r0 = split.begin(t), r1 = split.end(t);
        k.apply(x + r0 * C, residual ? residual + r0 * C : residual, y + r0 * C, (r1 - r0) * C, P,
                mean_e, scale_e, beta_e, relu);
    }
}

void batch_norm_forward_train(const float* x, const float* residual, const float* gamma,
                              const float* beta, float* running_mean, float* running_var, float* y,
                              float* mean, float* rstd, int64_t M, int64_t C, double momentum,
                              double eps, bool relu) {
    RC_CHECK(M > 1, "batch_norm_forward_train: need more than one value per channel (N*H*W > 1)");
    // Pass 1: sums of (x - pivot) and its square; the pivot (row 0) avoids cancellation
    // in E[d^2] - E[d]^2 when |mean| >> std.
    std::vector<double> s1(C), s2(C);
    batch_norm_stats(x, x, s1.data(), s2.data(), M, C);
    batch_norm_finalize(s1.data(), s2.data(), x, (double)M, running_mean, running_var, mean, rstd,
                        C, momentum, eps);
    // Pass 2: y = relu?((x - mean) * gamma * rstd + beta + residual).
    batch_norm_apply(x, residual, gamma, beta, mean, rstd, y, M, C, relu);
}

void batch_norm_forward_eval(const float* x, const float* residual, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float* y, int64_t M, int64_t C, double eps,
                             bool relu) {
    // Rounded rstd first, as the backward (and functional's eval cache) computes it.
    std::vector<float> rstd(C);
    for (int64_t c = 0; c < C; ++c) rstd[c] = (float)(1.0 / std::sqrt((double)running_var[c] + eps));
    batch_norm_apply(x, residual, gamma, beta, running_mean, rstd.data(), y, M, C, relu);
}

namespace {

// Per-channel patterns of the backward: mean, k1 = gamma * rstd (the forward's scale) and,
// with a fused ReLU, beta (null otherwise).
struct BwdPatterns {
    Patterns pat;
    float *mean_e, *k1_e, *beta_e;
    BwdPatterns(const float* gamma, const float* beta, const float* mean, const float* rstd,
                bool relu, int64_t C, int64_t P)
        : pat(3, P), mean_e(pat[0]), k1_e(pat[1]), beta_e(relu ? pat[2] : nullptr) {
        for (int64_t j = 0; j < P; ++j) {
            mean_e[j] = mean[j % C];
            k1_e[j] = (float)((double)gamma[j % C] * rstd[j % C]);
            if (relu) beta_e[j] = beta[j % C];
        }
    }
};

// Backward pass 1 over rows [0, M): sdy, sdyx (C, float64); with dx_eval, also writes
// dx = k1 * dy' (the eval backward, which needs no sums).
void bwd_reduce(const BatchNormKernels& k, const BwdPatterns& bp, const RowSplit& split,
                const float* dy, const float* x, float* dx_eval, double* sdy, double* sdyx,
                int64_t C, int64_t P) {
    const int nt = split.nt;
    Partials part(nt, P);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; ++t) {
        const int64_t r0 = split.begin(t), r1 = split.end(t), o = r0 * C;
        k.bwd_reduce(dy + o, x + o, bp.beta_e, dx_eval ? dx_eval + o : dx_eval, (r1 - r0) * C,
                     P, bp.mean_e, bp.k1_e, part.scratch(t), part.a(t), part.b(t));
    }
    part.combine(nt, C, sdy, sdyx);
}

void grads_from_sums(const double* sdy, const double* sdyx, const float* rstd, float* dgamma,
                     float* dbeta, int64_t C) {
    for (int64_t c = 0; c < C; ++c) {
        dbeta[c] = (float)sdy[c];
        dgamma[c] = (float)(sdyx[c] * rstd[c]);
    }
}

// Backward pass 2: dx = gamma*rstd * (dy' - sdy/count - xhat * sdyx*rstd/count), xhat =
// (x - mean) * rstd, written as k1 * dy' + k2 * (x - mean) + k3 [+ add].
void bwd_apply(const BatchNormKernels& k, const BwdPatterns& bp, const RowSplit& split,
               const float* dy, const float* x, const float* gamma, const float* rstd,
               const float* add, const double* sdy, const double* sdyx, double count, float* dx,
               int64_t C, int64_t P) {
    Patterns pat(2, P);
    float *k2_e = pat[0], *k3_e = pat[1];
    for (int64_t j = 0; j < P; ++j) {
        const int64_t c = j % C;
        const double g = gamma[c], r = rstd[c];
        k2_e[j] = (float)(-g * r * r * (sdyx[c] * r) / count);
        k3_e[j] = (float)(-g * r * sdy[c] / count);
    }
#pragma omp parallel for schedule(static) num_threads(split.nt)
    for (int t = 0; t < split.nt; ++t) {
        const int64_t r0 = split.begin(t), r1 = split.end(t), o = r0 * C;
        k.bwd_apply(dy + o, x + o, bp.beta_e, add ? add + o : add, dx + o, (r1 - r0) * C, P,
                    bp.mean_e, bp.k1_e, k2_e, k3_e);
    }
}

}  // namespace

void batch_norm_running_rstd(const float* running_var, float* rstd, int64_t C, double eps) {
    for (int64_t c = 0; c < C; ++c) rstd[c] = (float)(1.0 / std::sqrt((double)running_var[c] + eps));
}

void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, bool relu, const float* add,
                         float* dx, float* dgamma, float* dbeta, int64_t M, int64_t C,
                         bool train) {
    const BatchNormKernels& k = *pick(kBatchNorm).fn;
    const int64_t P = pattern_period(C);
    const RowSplit split(M, C, P);
    const BwdPatterns bp(gamma, beta, mean, rstd, relu, C, P);
    // Pass 1: sum dy' and sum dy' * (x - mean); in eval mode dx = gamma * rstd * dy' is
    // written in the same pass because it does not depend on the sums.
    std::vector<double> sdy(C), sdyx(C);
    bwd_reduce(k, bp, split, dy, x, train ? nullptr : dx, sdy.data(), sdyx.data(), C, P);
    grads_from_sums(sdy.data(), sdyx.data(), rstd, dgamma, dbeta, C);
    if (!train) {
        // Eval (frozen BN, rare): the extra pass keeps the reduce kernel to one variant.
        if (add) add_forward(dx, add, dx, M * C, false);
        return;
    }
    bwd_apply(k, bp, split, dy, x, gamma, rstd, add, sdy.data(), sdyx.data(), (double)M, dx, C, P);
}

void batch_norm_backward_reduce(const float* dy, const float* x, const float* gamma,
                                const float* beta, const float* mean, const float* rstd,
                                bool relu, double* sdy, double* sdyx, float* dgamma,
                                float* dbeta, int64_t M, int64_t C) {
    const int64_t P = pattern_period(C);
    const BwdPatterns bp(gamma, beta, mean, rstd, relu, C, P);
    bwd_reduce(*pick(kBatchNorm).fn, bp, RowSplit(M, C, P), dy, x, nullptr, sdy, sdyx, C, P);
    grads_from_sums(sdy, sdyx, rstd, dgamma, dbeta, C);
}

void batch_norm_backward_apply(const float* dy, const float* x, const float* gamma,
                               const float* beta, const float* mean, const float* rstd, bool relu,
                               const float* add, const double* sdy, const double* sdyx,
                               double count, float* dx, int64_t M, int64_t C) {
    const int64_t P = pattern_period(C);
    const BwdPatterns bp(gamma, beta, mean, rstd, relu, C, P);
    bwd_apply(*pick(kBatchNorm).fn, bp, RowSplit(M, C, P), dy, x, gamma, rstd, add, sdy, sdyx, count,
              dx, C, P);
}

std::vector<OpImpls> batch_norm_ops() {
    return any_call_ops(kBatchNorm, {"batch_norm_forward_train", "batch_norm_forward_eval",
                                     "batch_norm_backward", "batch_norm_stats",
                                     "batch_norm_apply", "batch_norm_backward_reduce",
                                     "batch_norm_backward_apply"});
}

}  // namespace rc
