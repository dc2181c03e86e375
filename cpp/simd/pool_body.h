// pool_body.h: the one source of the pooling kernels, included inside rc::scalar,
// rc::avx2 and rc::avx512 by pool.cpp / pool_avx2.cpp / pool_avx512.cpp (exported as
// `pool`, simd/kernels.h), so each TU's ISA flags vectorize the channel loops (NHWC: C is
// contiguous). Pooling is memory-bound
// except the max-pool window scan, whose running max/argmax must stay in registers: each
// TU defines max_window_lead(yr, ar, xw, C, W, h0, h1, w0, w1) -> channels done (the ISA
// files with intrinsics; the scalar one does none). No STL templates in here: a weak
// out-of-line copy compiled with AVX-512 flags could be picked by the linker for baseline
// callers. The including TU provides <cstdint>, "pool.h", "dispatch.h" and "simd/kernels.h".

namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Below this many elements touched, a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

// Max over one window for channels [0, nc) of the pixel rows at xw (pixel stride C),
// kept in the output row. '>' keeps the first maximum in window order (PyTorch's tie rule)
// and a NaN always wins, as in PyTorch. Channels max_window_lead (the TU's intrinsics) did
// not take come here; on the scalar path, all of them.
inline void max_window_tail(float* yr, int32_t* ar, const float* xw, int64_t nc, int64_t C,
                            int64_t W, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
    for (int64_t c = 0; c < nc; ++c) {
        yr[c] = -__builtin_inff();
        ar[c] = (int32_t)(h0 * W + w0);
    }
    for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
            const float* xp = xw + (h * W + w) * C;
            const int32_t idx = (int32_t)(h * W + w);
            for (int64_t c = 0; c < nc; ++c) {
                const float v = xp[c];
                const bool take = v > yr[c] || v != v;
                yr[c] = take ? v : yr[c];
                ar[c] = take ? idx : ar[c];
            }
        }
}

}  // namespace

void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const PoolShape& s) {
    const int64_t H = s.H, W = s.W, C = s.C, P = s.P, Q = s.Q;
    [[maybe_unused]] const bool par = s.N * P * Q * C * s.k * s.k >= kParallelMin;
    // Threads split output rows (n,p); each writes only its own y/argmax rows.
#pragma omp parallel for collapse(2) schedule(static) if (par) num_threads(rc::num_threads())
    for (int64_t n = 0; n < s.N; ++n) {
        for (int64_t p = 0; p < P; ++p) {
            const float* xn = x + n * H * W * C;
            const int64_t hs = p * s.stride - s.pad;
            const int64_t h0 = imax(hs, 0), h1 = imin(hs + s.k, H);
            for (int64_t q = 0; q < Q; ++q) {
                const int64_t ws = q * s.stride - s.pad;
                const int64_t w0 = imax(ws, 0), w1 = imin(ws + s.k, W);
                float* yr = y + ((n * P + p) * Q + q) * C;
                int32_t* ar = argmax + ((n * P + p) * Q + q) * C;
                // pad <= k/2 guarantees h0 < h1 and w0 < w1 (no all-padding window).
                const int64_t c0 = max_window_lead(yr, ar, xn, C, W, h0, h1, w0, w1);
                if (c0 < C) max_window_tail(yr + c0, ar + c0, xn + c0, C - c0, C, W, h0, h1, w0, w1);
            }
        }
    }
}

bool max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax, const PoolShape& s) {
    const int64_t HW = s.H * s.W, C = s.C, PQ = s.P * s.Q;
    int bad = 0;
    // Split by image: every scatter target lies in the thread's own image, so no races.
#pragma omp parallel for schedule(static) reduction(| : bad) if (s.N * HW * C >= kParallelMin) \
    num_threads(rc::num_threads())
    for (int64_t n = 0; n < s.N; ++n) {
        float* dxn = dx + n * HW * C;
        for (int64_t i = 0; i < HW * C; ++i) dxn[i] = 0.0f;
        const float* dyn = dy + n * PQ * C;
        const int32_t* an = argmax + n * PQ * C;
        for (int64_t i = 0; i < PQ; ++i) {
            for (int64_t c = 0; c < C; ++c) {
                const int32_t a = an[i * C + c];
                if (a < 0 || a >= HW) {
                    bad = 1;
                    continue;
                }
                dxn[a * C + c] += dyn[i * C + c];
            }
        }
    }
    return bad == 0;
}

void global_avg_pool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C) {
    const float scale = 1.0f / (float)HW;
#pragma omp parallel for schedule(static) if (N * HW * C >= kParallelMin) num_threads(rc::num_threads())
    for (int64_t n = 0; n < N; ++n) {
        float* yr = y + n * C;
        const float* xn = x + n * HW * C;
        for (int64_t c = 0; c < C; ++c) yr[c] = 0.0f;
        for (int64_t i = 0; i < HW; ++i)
            for (int64_t c = 0; c < C; ++c) yr[c] += xn[i * C + c];
        for (int64_t c = 0; c < C; ++c) yr[c] *= scale;
    }
}

void global_avg_pool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C) {
    const float scale = 1.0f / (float)HW;
#pragma omp parallel for collapse(2) schedule(static) if (N * HW * C >= kParallelMin) \
    num_threads(rc::num_threads())
    for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) {
            const float* dyr = dy + n * C;
            float* dxr = dx + (n * HW + i) * C;
            for (int64_t c = 0; c < C; ++c) dxr[c] = dyr[c] * scale;
        }
}

const PoolKernels pool = {max_pool2d_forward, max_pool2d_backward, global_avg_pool_forward,
                          global_avg_pool_backward};
