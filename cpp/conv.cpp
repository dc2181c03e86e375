// conv.cpp: 2-D convolution, NHWC activations and RSCK weights (conv.h). Holds the scalar
// reference (direct loops, baseline flags; simple on purpose), the algorithm setting, and
// the implementation list: bf16 (simd/conv_avx512_bf16.cpp) when asked for, Winograd
// (simd/winograd.h) where the setting resolves to it, the direct SIMD driver
// (simd/conv_driver.h), the scalar loops.
#include "conv.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {
namespace {

// y[n,p,q,:] = b + sum_{r,s,c} x[n, p*st-pad+r, q*st-pad+s, c] * w[r,s,c,:]
void forward_scalar(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
    const int64_t N = s.N, H = s.H, W = s.W, C = s.C, K = s.K, P = s.P, Q = s.Q;
#pragma omp parallel for collapse(2) num_threads(rc::num_threads())
    for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p)
            for (int64_t q = 0; q < Q; ++q) {
                float* yp = y + ((n * P + p) * Q + q) * K;
                for (int64_t k = 0; k < K; ++k) yp[k] = b ? b[k] : 0.0f;
                for (int64_t r = 0; r < s.R; ++r) {
                    int64_t h = p * s.stride - s.pad + r;
                    if (h < 0 || h >= H) continue;
                    for (int64_t t = 0; t < s.S; ++t) {
                        int64_t wc = q * s.stride - s.pad + t;
                        if (wc < 0 || wc >= W) continue;
                        const float* xp = x + ((n * H + h) * W + wc) * C;
                        const float* wp = w + (r * s.S + t) * C * K;
                        for (int64_t c = 0; c < C; ++c) {
                            float xv = xp[c];
                            for (int64_t k = 0; k < K; ++k) yp[k] += xv * wp[c * K + k];
                        }
                    }
                }
            }
}

// dx[n,h,w,c] = sum over (r,s) with h = p*st-pad+r, w = q*st-pad+s of dy[n,p,q,:] . w[r,s,c,:]
void backward_data_scalar(const float* dy, const float* w, float* dx, const ConvShape& s) {
    const int64_t N = s.N, H = s.H, W = s.W, C = s.C, K = s.K, P = s.P, Q = s.Q, st = s.stride;
#pragma omp parallel for collapse(2) num_threads(rc::num_threads())
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t wc = 0; wc < W; ++wc) {
                float* dxp = dx + ((n * H + h) * W + wc) * C;
                for (int64_t c = 0; c < C; ++c) dxp[c] = 0.0f;
                for (int64_t r = 0; r < s.R; ++r) {
                    int64_t ph = h + s.pad - r;
                    if (ph < 0 || ph % st || ph / st >= P) continue;
                    for (int64_t t = 0; t < s.S; ++t) {
                        int64_t qw = wc + s.pad - t;
                        if (qw < 0 || qw % st || qw / st >= Q) continue;
                        const float* dyp = dy + ((n * P + ph / st) * Q + qw / st) * K;
                        const float* wp = w + (r * s.S + t) * C * K;
                        for (int64_t c = 0; c < C; ++c) {
                            float acc = 0.0f;
                            for (int64_t k = 0; k < K; ++k) acc += dyp[k] * wp[c * K + k];
                            dxp[c] += acc;
                        }
                    }
                }
            }
}

// dw[r,s,c,k] = sum_{n,p,q} x[n, p*st-pad+r, q*st-pad+s, c] * dy[n,p,q,k]; db[k] = sum dy.
// Each thread sums its slice of the batch into a private copy; one fixed-order reduction.
void backward_weight_scalar(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s) {
    const int64_t N = s.N, H = s.H, W = s.W, C = s.C, K = s.K, P = s.P, Q = s.Q;
    const int64_t len = s.R * s.S * C * K + K;
    const int T = rc::num_threads();
    std::vector<float> priv(size_t(T) * len, 0.0f);
    int used = 1;
#pragma omp parallel num_threads(T)
    {
#ifdef RESNET_CPP_HAVE_OPENMP
        const int nt = omp_get_num_threads();
#else
        const int nt = 1;
#endif
        const int t = rc::thread_id();
#pragma omp single
        used = nt;
        float* mine = priv.data() + size_t(t) * len;
        for (int64_t n = N * t / nt; n < N * (t + 1) / nt; ++n)
            for (int64_t p = 0; p < P; ++p)
                for (int64_t q = 0; q < Q; ++q) {
                    const float* dyp = dy + ((n * P + p) * Q + q) * K;
                    for (int64_t k = 0; k < K; ++k) mine[len - K + k] += dyp[k];
                    for (int64_t r = 0; r < s.R; ++r) {
                        int64_t h = p * s.stride - s.pad + r;
                        if (h < 0 || h >= H) continue;
                        for (int64_t u = 0; u < s.S; ++u) {
                            int64_t wc = q * s.stride - s.pad + u;
                            if (wc < 0 || wc >= W) continue;
                            const float* xp = x + ((n * H + h) * W + wc) * C;
                            float* dwp = mine + (r * s.S + u) * C * K;
                            for (int64_t c = 0; c < C; ++c)
                                for (int64_t k = 0; k < K; ++k) dwp[c * K + k] += xp[c] * dyp[k];
                        }
                    }
                }
    }
    reduce_private(priv.data(), len, used, len - K, dw);
    if (db) reduce_private(priv.data() + len - K, len, used, K, db);
}

// The speed-first choice ("fast"): measured (benchmarks/NOTES.md, "Winograd"), 1 thread,
// F(4x4) beats F(2x2) on every ResNet-20/18 layer and direct wherever its GEMMs have 16+
// channels on both sides. Its transformed weights (36 x C x K floats) are swept once per
// block of tiles, so for 512x512 only the forward still wins (27 vs 33 ms at 7x7, batch
// 16; both backward passes lose). Backward-data reduces over K and writes C: with K >= 16
// it wins even for C < 16, where the direct kernel wastes vector lanes (the stem).
ConvAlgo fast_choice(const ConvShape& s, ConvPass pass) {
    const bool wide = pass == ConvPass::backward_data ? s.K >= 16 : s.C >= 16 && s.K >= 16;
    if (!wide) return ConvAlgo::direct;
    if (s.C * s.K <= 256 * 256) return ConvAlgo::winograd4;
    if (pass == ConvPass::forward && s.C * s.K <= 512 * 512) return ConvAlgo::winograd4;
    return ConvAlgo::direct;
}

// The default ("auto"): the fastest choice that keeps float32 precision, measured
// (benchmarks/NOTES.md, "Precision"): F(4x4)'s output transform (entries up to 8, with
// cancellation) amplifies the GEMM's rounding 4-9x, which reaches the model's gradients
// through forward and backward-data; F(2x2) rounds like direct. Backward-weight's final
// transform G^T dU G only shrinks (entries <= 1), so F(4x4) there rounds like direct too.
// F(2x2) loses to direct at 512x512 (every pass) and ties it in backward-data at 256x256.
ConvAlgo precise_choice(const ConvShape& s, ConvPass pass) {
    const ConvAlgo w2 = ConvAlgo::winograd2, direct = ConvAlgo::direct;
    switch (pass) {
    case ConvPass::forward: return s.C >= 16 && s.K >= 16 && s.C * s.K <= 256 * 256 ? w2 : direct;
    case ConvPass::backward_data: return s.K >= 16 && s.C * s.K <= 128 * 128 ? w2 : direct;
    default: return fast_choice(s, pass);
    }
}

// One setting per pass (forward, backward-data, backward-weight).
std::atomic<int> g_algo[3] = {};

const ConvAlgo kAlgos[] = {ConvAlgo::automatic, ConvAlgo::fast, ConvAlgo::direct,
                           ConvAlgo::winograd2, ConvAlgo::winograd4};
const char* const kPassNames[] = {"forward", "backward_data", "backward_weight"};

ConvAlgo parse_one(const std::string& name) {
    for (ConvAlgo a : kAlgos)
        if (name == conv_algo_name(a)) return a;
    throw std::invalid_argument("conv algorithm: expected 'auto', 'fast', 'direct', 'winograd2' or "
                                "'winograd4' (or per pass: 'forward=...,backward_data=...,"
                                "backward_weight=...'), got '" + name + "'");
}

ConvPass parse_conv_pass(const std::string& name) {
    for (int p = 0; p < 3; ++p)
        if (name == kPassNames[p]) return ConvPass(p);
    throw std::invalid_argument("pass: expected 'forward', 'backward_data' or 'backward_weight', got '" +
                                name + "'");
}

[[maybe_unused]] const bool g_env_read = [] {
    set_conv_algo(env_setting("RESNET_CPP_CONV_ALGO", ConvAlgoSetting{}, parse_conv_algo));
    return true;
}();

}  // namespace

const char* conv_algo_name(ConvAlgo a) {
    switch (a) {
    case ConvAlgo::fast: return "fast";
    case ConvAlgo::direct: return "direct";
    case ConvAlgo::winograd2: return "winograd2";
    case ConvAlgo::winograd4: return "winograd4";
    default: return "auto";
    }
}

ConvAlgoSetting parse_conv_algo(const std::string& spec) {
    ConvAlgoSetting out{};
    if (spec.find('=') == std::string::npos) {
        out.fill(parse_one(spec));
        return out;
    }
    // "pass=name,pass=name": unnamed passes stay 'auto'.
    size_t start = 0;
    while (start <= spec.size()) {
        const size_t comma = std::min(spec.find(',', start), spec.size());
        const std::string item = spec.substr(start, comma - start);
        const size_t eq = item.find('=');
        if (eq == std::string::npos)
            throw std::invalid_argument("conv algorithm: expected 'pass=name' items, got '" + item + "'");
        out[size_t(parse_conv_pass(item.substr(0, eq)))] = parse_one(item.substr(eq + 1));
        start = comma + 1;
    }
    return out;
}

std::string conv_algo_spec(const ConvAlgoSetting& a) {
    if (a[0] == a[1] && a[1] == a[2]) return conv_algo_name(a[0]);
    std::string out;
    for (int p = 0; p < 3; ++p)
        out += std::string(p ? "," : "") + kPassNames[p] + "=" + conv_algo_name(a[size_t(p)]);
    return out;
}

void set_conv_algo(const ConvAlgoSetting& a) {
    for (int p = 0; p < 3; ++p) g_algo[p].store(int(a[size_t(p)]), std::memory_order_relaxed);
}

ConvAlgoSetting conv_algo() {
    ConvAlgoSetting out{};
    for (int p = 0; p < 3; ++p) out[size_t(p)] = ConvAlgo(g_algo[p].load(std::memory_order_relaxed));
    return out;
}

namespace scalar {
const ConvKernels conv_direct = {forward_scalar, backward_data_scalar, backward_weight_scalar};
}

namespace {

// One conv call as the list sees it: the pass and the shape.
struct ConvCall {
    const ConvShape& s;
    ConvPass pass;
};

// The algorithm the setting picks for this call: Winograd only for 3x3 stride-1 layers.
ConvAlgo resolved_algo(const ConvCall& c) {
    if (c.s.R != 3 || c.s.S != 3 || c.s.stride != 1) return ConvAlgo::direct;
    const ConvAlgo a = ConvAlgo(g_algo[int(c.pass)].load(std::memory_order_relaxed));
    switch (a) {
    case ConvAlgo::automatic: return precise_choice(c.s, c.pass);
    case ConvAlgo::fast: return fast_choice(c.s, c.pass);
    default: return a;
    }
}

template <ConvAlgo A>
bool resolves_to(const ConvCall& c) { return resolved_algo(c) == A; }

// Unused in builds without the bf16 kernels.
[[maybe_unused]] bool bf16_asked(const ConvCall&) { return conv_precision() == ConvPrecision::bf16; }

// Best first. Winograd has no scalar version: capped at scalar, every call runs direct.
constexpr Impl<ConvCall, const ConvKernels*> kConv[] = {
    RC_IF_AVX512_BF16({"direct_bf16", Isa::avx512_bf16, bf16_asked, &avx512_bf16::conv_bf16})
    RC_IF_AVX512({"winograd4", Isa::avx512, resolves_to<ConvAlgo::winograd4>, &avx512::conv_winograd4})
    RC_IF_AVX512({"winograd2", Isa::avx512, resolves_to<ConvAlgo::winograd2>, &avx512::conv_winograd2})
    RC_IF_AVX512({"direct", Isa::avx512, nullptr, &avx512::conv_direct})
    RC_IF_AVX2({"winograd4", Isa::avx2, resolves_to<ConvAlgo::winograd4>, &avx2::conv_winograd4})
    RC_IF_AVX2({"winograd2", Isa::avx2, resolves_to<ConvAlgo::winograd2>, &avx2::conv_winograd2})
    RC_IF_AVX2({"direct", Isa::avx2, nullptr, &avx2::conv_direct})
    {"direct", Isa::scalar, nullptr, &scalar::conv_direct},
};

// impl_name's shape (N, H, W, C, K, R, S, stride, pad), checked as the kernels' arguments are.
ConvShape shape_of(const std::vector<int64_t>& d) {
    const char* const names[] = {"N", "H", "W", "C", "K", "R", "S"};
    for (int i = 0; i < 7; ++i)
        RC_CHECK(d[i] >= 1, std::string(names[i]) + ": expected an integer >= 1, got " +
                                std::to_string(d[i]));
    RC_CHECK(d[7] >= 1, "stride: expected an integer >= 1, got " + std::to_string(d[7]));
    RC_CHECK(d[8] >= 0 && d[8] < std::min(d[5], d[6]),
             "pad: expected an integer in [0, min(R, S) - 1], got " + std::to_string(d[8]));
    const ConvShape s = make_conv_shape(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]);
    RC_CHECK(s.H + 2 * s.pad >= s.R && s.W + 2 * s.pad >= s.S,
             "output size < 1: the kernel does not fit the padded input");
    return s;
}

}  // namespace

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
    pick(kConv, ConvCall{s, ConvPass::forward}).fn->forward(x, w, b, y, s);
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s) {
    pick(kConv, ConvCall{s, ConvPass::backward_data}).fn->backward_data(dy, w, dx, s);
}

void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s) {
    pick(kConv, ConvCall{s, ConvPass::backward_weight}).fn->backward_weight(x, dy, dw, db, s);
}

std::vector<OpImpls> conv_ops() {
    std::vector<OpImpls> rows;
    for (int p = 0; p < 3; ++p)
        rows.push_back({std::string("conv2d_") + kPassNames[p],
                        {"N", "H", "W", "C", "K", "R", "S", "stride", "pad"}, impl_ids(kConv),
                        [p](const std::vector<int64_t>& d) {
                            return impl_id(pick(kConv, ConvCall{shape_of(d), ConvPass(p)}));
                        }});
    return rows;
}

}  // namespace rc
