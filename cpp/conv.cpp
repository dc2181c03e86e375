// conv.cpp: 2-D convolution, NHWC activations and RSCK weights (see simd/conv_kernels.h).
// Holds the scalar fallback (direct loops, baseline flags; simple on purpose) and the
// dispatch to the AVX2 / AVX-512 implementations, and to bf16 (conv_bf16.cpp) when asked.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "dispatch.h"
#include "simd/conv_kernels.h"

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
    for (int64_t i = 0; i < len - K; ++i) {
        float acc = priv[i];
        for (int u = 1; u < used; ++u) acc += priv[size_t(u) * len + i];
        dw[i] = acc;
    }
    if (db)
        for (int64_t k = 0; k < K; ++k) {
            float acc = priv[len - K + k];
            for (int u = 1; u < used; ++u) acc += priv[size_t(u) * len + len - K + k];
            db[k] = acc;
        }
}

// The speed-first choice ("fast"): measured (benchmarks/NOTES.md, "Winograd"), 1 thread,
// F(4x4) beats F(2x2) on every ResNet-20/18 layer and direct wherever its GEMMs have 16+
// channels on both sides. Its transformed weights (36 x C x K floats) are swept once per
// block of tiles, so for 512x512 only the forward still wins (27 vs 33 ms at 7x7, batch
// 16; both backward passes lose). Backward-data reduces over K and writes C: with K >= 16
// it wins even for C < 16, where the direct kernel wastes vector lanes (the stem).
int fast_tile(const ConvShape& s, ConvPass pass) {
    const bool wide = pass == ConvPass::backward_data ? s.K >= 16 : s.C >= 16 && s.K >= 16;
    if (!wide) return 0;
    if (s.C * s.K <= 256 * 256) return 4;
    if (pass == ConvPass::forward && s.C * s.K <= 512 * 512) return 4;
    return 0;
}

// The default ("auto"): the fastest choice that keeps float32 precision, measured
// (benchmarks/NOTES.md, "Precision"): F(4x4)'s output transform (entries up to 8, with
// cancellation) amplifies the GEMM's rounding 4-9x, which reaches the model's gradients
// through forward and backward-data; F(2x2) rounds like direct. Backward-weight's final
// transform G^T dU G only shrinks (entries <= 1), so F(4x4) there rounds like direct too.
// F(2x2) loses to direct at 512x512 (every pass) and ties it in backward-data at 256x256.
int precise_tile(const ConvShape& s, ConvPass pass) {
    switch (pass) {
    case ConvPass::forward: return s.C >= 16 && s.K >= 16 && s.C * s.K <= 256 * 256 ? 2 : 0;
    case ConvPass::backward_data: return s.K >= 16 && s.C * s.K <= 128 * 128 ? 2 : 0;
    default: return fast_tile(s, pass);
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

ConvPass parse_conv_pass(const std::string& name) {
    for (int p = 0; p < 3; ++p)
        if (name == kPassNames[p]) return ConvPass(p);
    throw std::invalid_argument("pass: expected 'forward', 'backward_data' or 'backward_weight', got '" +
                                name + "'");
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

int conv_winograd_tile(const ConvShape& s, ConvPass pass) {
    if (active_isa() == Isa::scalar || s.R != 3 || s.S != 3 || s.stride != 1) return 0;
    switch (ConvAlgo(g_algo[int(pass)].load(std::memory_order_relaxed))) {
    case ConvAlgo::direct: return 0;
    case ConvAlgo::winograd2: return 2;
    case ConvAlgo::winograd4: return 4;
    case ConvAlgo::fast: return fast_tile(s, pass);
    default: return precise_tile(s, pass);
    }
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
#ifdef RESNET_CPP_HAVE_AVX512_BF16
    if (conv_runs_bf16()) return avx512_bf16::conv2d_forward(x, w, b, y, s);
#endif
    const int wino = conv_winograd_tile(s, ConvPass::forward);
    switch (active_isa()) {
#ifdef RESNET_CPP_HAVE_AVX512
    case Isa::avx512:
        return wino ? avx512::conv2d_winograd_forward(wino, x, w, b, y, s) : avx512::conv2d_forward(x, w, b, y, s);
#endif
#ifdef RESNET_CPP_HAVE_AVX2
    case Isa::avx2: return wino ? avx2::conv2d_winograd_forward(wino, x, w, b, y, s) : avx2::conv2d_forward(x, w, b, y, s);
#endif
    default: return forward_scalar(x, w, b, y, s);
    }
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s) {
#ifdef RESNET_CPP_HAVE_AVX512_BF16
    if (conv_runs_bf16()) return avx512_bf16::conv2d_backward_data(dy, w, dx, s);
#endif
    const int wino = conv_winograd_tile(s, ConvPass::backward_data);
    switch (active_isa()) {
#ifdef RESNET_CPP_HAVE_AVX512
    case Isa::avx512:
        return wino ? avx512::conv2d_winograd_backward_data(wino, dy, w, dx, s) : avx512::conv2d_backward_data(dy, w, dx, s);
#endif
#ifdef RESNET_CPP_HAVE_AVX2
    case Isa::avx2: return wino ? avx2::conv2d_winograd_backward_data(wino, dy, w, dx, s) : avx2::conv2d_backward_data(dy, w, dx, s);
#endif
    default: return backward_data_scalar(dy, w, dx, s);
    }
}

void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s) {
#ifdef RESNET_CPP_HAVE_AVX512_BF16
    if (conv_runs_bf16()) return avx512_bf16::conv2d_backward_weight(x, dy, dw, db, s);
#endif
    const int wino = conv_winograd_tile(s, ConvPass::backward_weight);
    switch (active_isa()) {
#ifdef RESNET_CPP_HAVE_AVX512
    case Isa::avx512:
        return wino ? avx512::conv2d_winograd_backward_weight(wino, x, dy, dw, db, s) : avx512::conv2d_backward_weight(x, dy, dw, db, s);
#endif
#ifdef RESNET_CPP_HAVE_AVX2
    case Isa::avx2: return wino ? avx2::conv2d_winograd_backward_weight(wino, x, dy, dw, db, s) : avx2::conv2d_backward_weight(x, dy, dw, db, s);
#endif
    default: return backward_weight_scalar(x, dy, dw, db, s);
    }
}

}  // namespace rc
