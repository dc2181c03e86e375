// conv_avx512.cpp: AVX-512 convolution micro-kernels; the driver (scratch layout, weight
// packing, threading) is shared with AVX2 through conv_driver.h. One zmm = 16 output
// channels, FMAs take the broadcast input value as an embedded {1to16} memory operand.
#include <immintrin.h>

#include <utility>

#include "dispatch.h"
#include "simd/conv_driver.h"
#include "simd/winograd.h"

namespace {

// Forward: acc[PX pixels][NV zmm] = bias + sum_{tap, c} x[pixel + tap, c] * w[tap, c, :].
// With NV*PX <= 28 the accumulators stay in registers for the whole reduction.
template <int NV, int PX>
void fwd_kernel(const FwdArgs& a) {
    __m512 acc[PX][NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
        __m512 bv = a.bias ? _mm512_loadu_ps(a.bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 32
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
                __m512 wv[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wp + 16 * v);
#pragma GCC unroll 32
                for (int j = 0; j < PX; ++j) {
                    __m512 xb = _mm512_set1_ps(xc[16 * j]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_fmadd_ps(xb, wv[v], acc[j][v]);
                }
                wp += 16 * NV;
            }
        }
    }
    __mmask16 last = __mmask16((1u << a.klast) - 1u);
#pragma GCC unroll 32
    for (int j = 0; j < PX; ++j) {
        float* y = a.y + j * a.ystep;
#pragma GCC unroll 4
        for (int v = 0; v < NV - 1; ++v) _mm512_storeu_ps(y + 16 * v, acc[j][v]);
        _mm512_mask_storeu_ps(y + 16 * (NV - 1), last, acc[j][NV - 1]);
    }
}

// Backward-weight: acc[UB (s,c) rows][NV zmm] += x[pixel, u] * dy[pixel, :] over a band of
// output pixels, accumulated into the thread's private dW.
template <int NV, int UB>
void bww_kernel(const BwwArgs& a) {
    __m512 acc[UB][NV];
#pragma GCC unroll 32
    for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(a.dw + i * a.dwstride + 16 * v);
    __mmask16 last = __mmask16((1u << a.klast) - 1u);
    for (int64_t rr = 0; rr < a.rows; ++rr) {
        const float* xq = a.x + rr * a.xrow;
        const float* dq = a.dy + rr * a.cols * a.kstride;
        for (int64_t q = 0; q < a.cols; ++q) {
            __m512 dv[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV - 1; ++v) dv[v] = _mm512_loadu_ps(dq + 16 * v);
            dv[NV - 1] = _mm512_maskz_loadu_ps(last, dq + 16 * (NV - 1));
#pragma GCC unroll 32
            for (int i = 0; i < UB; ++i) {
                __m512 xb = _mm512_set1_ps(xq[i]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(xb, dv[v], acc[i][v]);
            }
            xq += a.xpix;
            dq += a.kstride;
        }
    }
#pragma GCC unroll 32
    for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(a.dw + i * a.dwstride + 16 * v, acc[i][v]);
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

// Pixels (forward) / (s,c) rows (backward-weight) per call for NV zmm: NV*PX <= 28 of the
// 32 registers are accumulators, NV hold weights (or dy), broadcasts are memory operands.
// NV <= 2: measured as fast as NV = 4 (6 px) on ResNet-20 and much faster for big C*K, whose
// packed weight block then stays in L2 (benchmarks/NOTES.md).
constexpr int kPx[3] = {0, 28, 14};

struct Micro {
    using Elem = float;  // scratch and packed-weight element (conv_driver.h)
    static constexpr int kMaxNV = 2;
    static int fwd_px(int nv) { return kPx[nv]; }
    static int bww_ub(int nv) { return kPx[nv]; }
    // d[0..n) = s[0..n) for n < 16; d's other lanes get zeros (never read).
    static void copy_tail(float* d, const float* s, int n) {
        _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), s));
    }
    static FwdFn fwd(int nv, int px) {
        return nv == 1 ? Row<1, std::make_integer_sequence<int, 28>>::fwd[px - 1]
                       : Row<2, std::make_integer_sequence<int, 14>>::fwd[px - 1];
    }
    static BwwFn bww(int nv, int ub) {
        return nv == 1 ? Row<1, std::make_integer_sequence<int, 28>>::bww[ub - 1]
                       : Row<2, std::make_integer_sequence<int, 14>>::bww[ub - 1];
    }
    // 16 float lanes for the Winograd transforms (winograd.h); n in 1..16 valid lanes.
    using F = __m512;
    static F zero() { return _mm512_setzero_ps(); }
    static F load(const float* p) { return _mm512_loadu_ps(p); }
    static F loadn(const float* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), p); }
    static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
    static void storen(float* p, F v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1u), v); }
    static F add(F a, F b) { return _mm512_add_ps(a, b); }
    static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static F set1(float v) { return _mm512_set1_ps(v); }
    static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
    static F fnma(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
};

}  // namespace

namespace rc::avx512 {
const ConvKernels conv_direct = direct_kernels<Micro>;
const ConvKernels conv_winograd2 = winograd_kernels<2, Micro>;
const ConvKernels conv_winograd4 = winograd_kernels<4, Micro>;
}  // namespace rc::avx512
