// eltwise.cpp: ReLU, residual add (+ReLU), their backward, NCHW<->NHWC conversion and the
// option-A shortcut (strided subsample + zero channel pad, NHWC).
// Holds the baseline (scalar) instance of the shared range kernels, the implementation lists
// and the threaded drivers. Every op is one streaming pass; threads take contiguous 64-byte-aligned
// slices of the flat array, so results never depend on the thread count.
#include <algorithm>
#include <cstring>

#include "eltwise.h"

#include "common.h"
#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc::scalar {
namespace {

#include "simd/vec_scalar.h"
inline void tile16(const float* a, int64_t lda, float* b, int64_t ldb) {
    for (int j = 0; j < 16; ++j)
        for (int i = 0; i < 16; ++i) b[j * ldb + i] = a[i * lda + j];
}

}  // namespace

#include "simd/eltwise_body.h"

}  // namespace rc::scalar

namespace rc {
namespace {

constexpr Impl<AnyCall, const EltwiseKernels*> kEltwise[] = {
    RC_IF_AVX512({"eltwise", Isa::avx512, nullptr, &avx512::eltwise})
    RC_IF_AVX2({"eltwise", Isa::avx2, nullptr, &avx2::eltwise})
    {"eltwise", Isa::scalar, nullptr, &scalar::eltwise},
};

// Below this many elements per thread the fork/join costs more than the pass (~64 KiB).
constexpr int64_t kMinPerThread = 16384;

int threads_for(int64_t work) {
    int64_t want = work / kMinPerThread, n = num_threads();
    want = want < 1 ? 1 : want;
    return (int)(n < want ? n : want);
}

// Runs f(begin, end) on nt contiguous slices of [0, n), slice starts multiples of 16 floats.
template <class F>
void split_flat(int64_t n, F f) {
    const int nt = threads_for(n);
    const int64_t chunk = ((n + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; ++t) {
        const int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
        if (b < e) f(b, e);
    }
}

// Per image: A (R, K) row-major -> B (K, R). Threads take (image, block of 64 B rows)
// items, so each writes its own contiguous span of B; the ISA kernel tiles 16 x 16.
void transpose_images(const float* A, float* B, int64_t N, int64_t R, int64_t K) {
    constexpr int64_t T = 64;
    const EltwiseKernels& k = *pick(kEltwise).fn;
    const int64_t kb = (K + T - 1) / T, items = N * kb;
    int nt = threads_for(N * R * K);
    nt = (int64_t)nt < items ? nt : (int)items;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t it = 0; it < items; ++it) {
        const int64_t n = it / kb, k0 = (it % kb) * T, k1 = k0 + T < K ? k0 + T : K;
        k.transpose(A + n * R * K, B + n * R * K, R, K, k0, k1);
    }
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t n) {
    const EltwiseKernels& k = *pick(kEltwise).fn;
    split_flat(n, [&](int64_t b, int64_t e) { k.relu(x + b, y + b, e - b); });
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n) {
    const EltwiseKernels& k = *pick(kEltwise).fn;
    split_flat(n, [&](int64_t b, int64_t e) { k.mask(dy + b, y + b, dx + b, e - b); });
}

void add_forward(const float* a, const float* b, float* y, int64_t n, bool relu) {
    const EltwiseKernels& k = *pick(kEltwise).fn;
    split_flat(n, [&](int64_t s, int64_t e) { k.add(a + s, b + s, y + s, e - s, relu); });
}

namespace {

// Pixel rows are the work items (a row is W*C or Wo*K contiguous floats): plain copies and
// adds the compiler vectorizes, memory-bound, so no ISA-specific body.
void shortcut_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
                      int64_t K, int64_t stride) {
    const int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, lo = (K - C) / 2;
    const int nt = threads_for(N * Ho * Wo * K);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < N * Ho; ++r) {
        const int64_t n = r / Ho, h = (r % Ho) * stride;
        const float* xr = x + (n * H + h) * W * C;
        float* yr = y + r * Wo * K;
        for (int64_t j = 0; j < Wo; ++j) {
            float* yp = yr + j * K;
            std::fill(yp, yp + lo, 0.0f);
            std::memcpy(yp + lo, xr + j * stride * C, C * sizeof(float));
            std::fill(yp + lo + C, yp + K, 0.0f);
        }
    }
}

void shortcut_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                       int64_t K, int64_t stride, bool accumulate) {
    const int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, lo = (K - C) / 2;
    const int nt = threads_for(N * H * W * C);
    // Input rows: a row off the stride grid gets no gradient (zeroed unless accumulating).
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < N * H; ++r) {
        const int64_t n = r / H, h = r % H;
        float* dxr = dx + r * W * C;
        if (h % stride) {
            if (!accumulate) std::fill(dxr, dxr + W * C, 0.0f);
            continue;
        }
        const float* dyr = dy + (n * Ho + h / stride) * Wo * K + lo;
        for (int64_t w = 0; w < W; ++w) {
            float* d = dxr + w * C;
            if (w % stride) {
                if (!accumulate) std::fill(d, d + C, 0.0f);
                continue;
            }
            const float* g = dyr + (w / stride) * K;
            if (accumulate)
                for (int64_t c = 0; c < C; ++c) d[c] += g[c];
            else
                std::memcpy(d, g, C * sizeof(float));
        }
    }
}

}  // namespace

namespace scalar {
const ShortcutKernels shortcut_a = {shortcut_forward, shortcut_backward};
}

constexpr Impl<AnyCall, const ShortcutKernels*> kShortcut[] = {
    {"shortcut_a", Isa::scalar, nullptr, &scalar::shortcut_a},
};

void shortcut_a_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t K, int64_t stride) {
    pick(kShortcut).fn->forward(x, y, N, H, W, C, K, stride);
}

void shortcut_a_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t K, int64_t stride, bool accumulate) {
    pick(kShortcut).fn->backward(dy, dx, N, H, W, C, K, stride, accumulate);
}

void nchw_to_nhwc(const float* x, float* y, int64_t N, int64_t C, int64_t HW) {
    transpose_images(x, y, N, C, HW);
}

void nhwc_to_nchw(const float* x, float* y, int64_t N, int64_t C, int64_t HW) {
    transpose_images(x, y, N, HW, C);
}

std::vector<OpImpls> eltwise_ops() {
    std::vector<OpImpls> rows = any_call_ops(
        kEltwise, {"relu_forward", "relu_backward", "add_forward", "add_relu_forward",
                   "add_relu_backward", "nchw_to_nhwc", "nhwc_to_nchw"});
    for (OpImpls& row : any_call_ops(kShortcut, {"shortcut_a_forward", "shortcut_a_backward"}))
        rows.push_back(row);
    return rows;
}

}  // namespace rc
