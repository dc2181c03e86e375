// conv_avx2.cpp: AVX2+FMA convolution micro-kernels; the driver is shared with AVX-512
// through conv_driver.h. A group of 16 output channels is two ymm; 12 of the 16 ymm
// registers hold accumulators (PERF.md item 6: 6 px x 2 ymm).
#include <immintrin.h>

#include <utility>

#include "dispatch.h"
#include "simd/conv_driver.h"
#include "simd/winograd.h"

namespace {

// Lane masks for the last group's two ymm halves (klast in 1..16 valid lanes).
inline void tail_masks(int klast, __m256i& lo, __m256i& hi) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(klast), iota);
    hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(klast - 8), iota);
}

// Forward: acc[PX pixels][2*NV ymm] = bias + sum_{tap, c} x[pixel + tap, c] * w[tap, c, :].
template <int NV, int PX>
void fwd_kernel(const FwdArgs& a) {
    constexpr int NY = 2 * NV;
    __m256 acc[PX][NY];
#pragma GCC unroll 4
    for (int v = 0; v < NY; ++v) {
        __m256 bv = a.bias ? _mm256_loadu_ps(a.bias + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int j = 0; j < PX; ++j) acc[j][v] = bv;
    }
    const float* wp = a.w;
    for (int64_t t = 0; t < a.ntaps; ++t) {
        const float* xb0 = a.x + a.tap[t];
        for (int64_t c0 = 0; c0 < a.cin; c0 += 16, xb0 += a.plane) {
            // Scratch is [channel block][pixel][16]: pixel j, channel c at xc[16*j].
            const float* xc = xb0;
            const float* xend = xb0 + (a.cin - c0 < 16 ? a.cin - c0 : 16);
            for (; xc != xend; ++xc) {
                __m256 wv[NY];
#pragma GCC unroll 4
                for (int v = 0; v < NY; ++v) wv[v] = _mm256_loadu_ps(wp + 8 * v);
#pragma GCC unroll 8
                for (int j = 0; j < PX; ++j) {
                    __m256 xb = _mm256_broadcast_ss(xc + 16 * j);
#pragma GCC unroll 4
                    for (int v = 0; v < NY; ++v) acc[j][v] = _mm256_fmadd_ps(xb, wv[v], acc[j][v]);
                }
                wp += 8 * NY;
            }
        }
    }
    if (a.klast == 16) {  // vmaskmovps stores are slow on AMD: only for a real K tail
#pragma GCC unroll 8
        for (int j = 0; j < PX; ++j)
#pragma GCC unroll 4
            for (int v = 0; v < NY; ++v) _mm256_storeu_ps(a.y + j * a.ystep + 8 * v, acc[j][v]);
        return;
    }
    __m256i lo, hi;
    tail_masks(a.klast, lo, hi);
#pragma GCC unroll 8
    for (int j = 0; j < PX; ++j) {
        float* y = a.y + j * a.ystep;
#pragma GCC unroll 4
        for (int v = 0; v < NY - 2; ++v) _mm256_storeu_ps(y + 8 * v, acc[j][v]);
        _mm256_maskstore_ps(y + 8 * (NY - 2), lo, acc[j][NY - 2]);
        _mm256_maskstore_ps(y + 8 * (NY - 1), hi, acc[j][NY - 1]);
    }
}

// Backward-weight: acc[UB (s,c) rows][2*NV ymm] += x[pixel, u] * dy[pixel, :] over a band of
// output pixels, accumulated into the thread's private dW.
template <int NV, int UB>
void bww_kernel(const BwwArgs& a) {
    constexpr int NY = 2 * NV;
    __m256 acc[UB][NY];
#pragma GCC unroll 8
    for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NY; ++v) acc[i][v] = _mm256_loadu_ps(a.dw + i * a.dwstride + 8 * v);
    __m256i lo, hi;
    tail_masks(a.klast, lo, hi);
    for (int64_t rr = 0; rr < a.rows; ++rr) {
        const float* xq = a.x + rr * a.xrow;
        const float* dq = a.dy + rr * a.cols * a.kstride;
        for (int64_t q = 0; q < a.cols; ++q) {
            __m256 dv[NY];
#pragma GCC unroll 4
            for (int v = 0; v < NY - 2; ++v) dv[v] = _mm256_loadu_ps(dq + 8 * v);
            dv[NY - 2] = _mm256_maskload_ps(dq + 8 * (NY - 2), lo);
            dv[NY - 1] = _mm256_maskload_ps(dq + 8 * (NY - 1), hi);
#pragma GCC unroll 8
            for (int i = 0; i < UB; ++i) {
                __m256 xb = _mm256_broadcast_ss(xq + i);
#pragma GCC unroll 4
                for (int v = 0; v < NY; ++v) acc[i][v] = _mm256_fmadd_ps(xb, dv[v], acc[i][v]);
            }
            xq += a.xpix;
            dq += a.kstride;
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NY; ++v) _mm256_storeu_ps(a.dw + i * a.dwstride + 8 * v, acc[i][v]);
}

using FwdFn = void (*)(const FwdArgs&);
using BwwFn = void (*)(const BwwArgs&);

// Tables of every block width 1..max for each NV (remainder runs use the smaller ones).
template <int NV, class Seq>
struct Row;
template <int NV, int... I>
struct Row<NV, std::integer_sequence<int, I...>> {
    static constexpr FwdFn fwd[] = {&fwd_kernel<NV, I + 1>...};
    static constexpr BwwFn bww[] = {&bww_kernel<NV, I + 1>...};
};

// 16 float lanes as two ymm, for the Winograd transforms (winograd.h).
struct F16 {
    __m256 lo, hi;
};

// 6 px x 2 ymm: 12 accumulators, the rest for weights and a broadcast. Measured: one group
// of 16 channels per call beats 3 px x 4 ymm for K >= 32 (benchmarks/NOTES.md).
struct Micro {
    using Elem = float;  // scratch and packed-weight element (conv_driver.h)
    static constexpr int kMaxNV = 1;
    static int fwd_px(int) { return 6; }
    static int bww_ub(int) { return 6; }
    // d[0..n) = s[0..n) for n < 16; d's other lanes get zeros (never read).
    static void copy_tail(float* d, const float* s, int n) {
        __m256i lo, hi;
        tail_masks(n, lo, hi);
        _mm256_storeu_ps(d, _mm256_maskload_ps(s, lo));
        _mm256_storeu_ps(d + 8, _mm256_maskload_ps(s + 8, hi));
    }
    static FwdFn fwd(int, int px) { return Row<1, std::make_integer_sequence<int, 6>>::fwd[px - 1]; }
    static BwwFn bww(int, int ub) { return Row<1, std::make_integer_sequence<int, 6>>::bww[ub - 1]; }
    // Winograd transform lanes; n in 1..16 valid lanes.
    using F = F16;
    static F zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
    static F load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
    static F loadn(const float* p, int n) {
        __m256i lo, hi;
        tail_masks(n, lo, hi);
        return {_mm256_maskload_ps(p, lo), _mm256_maskload_ps(p + 8, hi)};
    }
    static void store(float* p, F v) {
        _mm256_storeu_ps(p, v.lo);
        _mm256_storeu_ps(p + 8, v.hi);
    }
    static void storen(float* p, F v, int n) {
        __m256i lo, hi;
        tail_masks(n, lo, hi);
        _mm256_maskstore_ps(p, lo, v.lo);
        _mm256_maskstore_ps(p + 8, hi, v.hi);
    }
    static F add(F a, F b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
    static F sub(F a, F b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
    static F mul(F a, F b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
    static F set1(float v) { return {_mm256_set1_ps(v), _mm256_set1_ps(v)}; }
    static F fma(F a, F b, F c) {  // a*b + c
        return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
    }
    static F fnma(F a, F b, F c) {  // c - a*b
        return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)};
    }
};

}  // namespace

namespace rc::avx2 {
const ConvKernels conv_direct = direct_kernels<Micro>;
const ConvKernels conv_winograd2 = winograd_kernels<2, Micro>;
const ConvKernels conv_winograd4 = winograd_kernels<4, Micro>;
}  // namespace rc::avx2
