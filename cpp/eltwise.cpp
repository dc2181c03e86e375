// eltwise.cpp: ReLU, residual add (+ReLU), their backward, NCHW<->NHWC conversion and the
// option-A shortcut (strided subsample + zero channel pad, NHWC).
// Holds the baseline (scalar) instance of the shared range kernels, the ISA dispatch and the
// threaded drivers. Every op is one streaming pass; threads take contiguous 64-byte-aligned
// slices of the flat array, so results never depend on the thread count.
#include <algorithm>
#include <cstring>

#include "common.h"
#include "dispatch.h"
#include "simd/eltwise_kernels.h"

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

struct EwKernels {
    decltype(&scalar::ew_relu) relu;
    decltype(&scalar::ew_mask) mask;
    decltype(&scalar::ew_add) add;
    decltype(&scalar::ew_transpose) transpose;
};

EwKernels pick_kernels() {
    switch (active_isa()) {
#ifdef RESNET_CPP_HAVE_AVX512
        case Isa::avx512:
            return {avx512::ew_relu, avx512::ew_mask, avx512::ew_add, avx512::ew_transpose};
#endif
#ifdef RESNET_CPP_HAVE_AVX2
        case Isa::avx2:
            return {avx2::ew_relu, avx2::ew_mask, avx2::ew_add, avx2::ew_transpose};
#endif
        default:
            return {scalar::ew_relu, scalar::ew_mask, scalar::ew_add, scalar::ew_transpose};
    }
}

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
    const EwKernels k = pick_kernels();
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
    const EwKernels k = pick_kernels();
    split_flat(n, [&](int64_t b, int64_t e) { k.relu(x + b, y + b, e - b); });
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n) {
    const EwKernels k = pick_kernels();
    split_flat(n, [&](int64_t b, int64_t e) { k.mask(dy + b, y + b, dx + b, e - b); });
}

void add_forward(const float* a, const float* b, float* y, int64_t n, bool relu) {
    const EwKernels k = pick_kernels();
    split_flat(n, [&](int64_t s, int64_t e) { k.add(a + s, b + s, y + s, e - s, relu); });
}

// Pixel rows are the work items (a row is W*C or Wo*K contiguous floats): plain copies and
// adds the compiler vectorizes, memory-bound, so no ISA-specific body.
void shortcut_a_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
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

void shortcut_a_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
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

void nchw_to_nhwc(const float* x, float* y, int64_t N, int64_t C, int64_t HW) {
    transpose_images(x, y, N, C, HW);
}

void nhwc_to_nchw(const float* x, float* y, int64_t N, int64_t C, int64_t HW) {
    transpose_images(x, y, N, HW, C);
}

}  // namespace rc
