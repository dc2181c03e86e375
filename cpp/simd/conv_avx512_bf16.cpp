// conv_avx512_bf16.cpp: convolutions with bf16 operands and fp32 accumulation (AVX512-BF16:
// vdpbf16ps, vcvtne2ps2bf16), for conv precision "bf16" (conv_bf16.cpp).
//
// vdpbf16ps acc, a, b adds a[2l]*b[2l] + a[2l+1]*b[2l+1] to fp32 lane l: the reduction runs
// over pairs, which sit innermost in both operands (PERF.md items 24-26, 33):
// - Forward and backward-data reuse the fp32 engine (conv_driver.h) with a bf16 scratch
//   [C/16][st][st][Hph][Wph][16] (rounded while it is built) and weights packed as
//   [K block][tap][c/2][NV*16][2]. One broadcast 32-bit channel pair of a pixel meets NV
//   vectors of 16 output channels x 2 input channels.
// - Backward-weight reduces over output pixels, so the pairs are pixel pairs (q, q+1):
//   per image, x is rewritten as z[h][w][c] = (x[h][w][c], x[h][w+st][c]) over the padded
//   image and dy as t[p][q/2][k] = (dy[p][q][k], dy[p][q+1][k]); a micro-kernel call then
//   keeps UB (s,c) rows x NV groups of 16 k in registers over a band of output rows (or
//   over several small images at once).
// Every rounding is to nearest even (denormal inputs become zero, as the instructions do);
// accumulators, bias, outputs and the weight gradient's private copies are fp32.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "dispatch.h"
#include "simd/conv_driver.h"

namespace {

using bf16 = uint16_t;  // bf16 bits

__mmask16 lanes(int n) { return __mmask16((1u << n) - 1u); }

// 16 (a[l], b[l]) pairs rounded to bf16, l < n (n in 1..16; lanes past n and a null a or b
// give zeros): the 64-byte operand vdpbf16ps reads.
__m512i pairs16(const float* a, const float* b, int n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 va = a ? _mm512_maskz_loadu_ps(lanes(n), a) : _mm512_setzero_ps();
    const __m512 vb = b ? _mm512_maskz_loadu_ps(lanes(n), b) : _mm512_setzero_ps();
    const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_permutex2var_ps(va, hi, vb),
                                           _mm512_permutex2var_ps(va, lo, vb));
    return (__m512i)r;
}

// vdpbf16ps with one 32-bit pair broadcast from memory (GCC 12 emits a vpbroadcastd: two
// instructions per dot product, which Zen 4 dispatches at one vdpbf16ps per cycle anyway).
inline __m512 dot_bcast(__m512 acc, const bf16* pair, __m512i v) {
    int32_t p;
    std::memcpy(&p, pair, 4);
    return _mm512_dpbf16_ps(acc, (__m512bh)v, (__m512bh)_mm512_set1_epi32(p));
}

// Forward: acc[PX pixels][NV zmm] = bias + sum_{tap, channel pair} x pair * w pairs.
template <int NV, int PX>
void fwd_kernel(const FwdArgsT<bf16>& a) {
    __m512 acc[PX][NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
        __m512 bv = a.bias ? _mm512_loadu_ps(a.bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 32
        for (int j = 0; j < PX; ++j) acc[j][v] = bv;
    }
    const bf16* wp = a.w;
    for (int64_t t = 0; t < a.ntaps; ++t) {
        const bf16* xb0 = a.x + a.tap[t];
        for (int64_t c0 = 0; c0 < a.cin; c0 += 16, xb0 += a.plane) {
            // Scratch is [channel block][pixel][16]: pixel j, channel pair i at xb0[16*j + 2*i].
            const bf16* xend = xb0 + (a.cin - c0 < 16 ? (a.cin - c0 + 1) / 2 * 2 : 16);
            for (const bf16* xc = xb0; xc != xend; xc += 2) {
                __m512i wv[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(wp + 32 * v);
#pragma GCC unroll 32
                for (int j = 0; j < PX; ++j)
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) acc[j][v] = dot_bcast(acc[j][v], xc + 16 * j, wv[v]);
                wp += 32 * NV;
            }
        }
    }
    const __mmask16 last = lanes(a.klast);
#pragma GCC unroll 32
    for (int j = 0; j < PX; ++j) {
        float* y = a.y + j * a.ystep;
#pragma GCC unroll 4
        for (int v = 0; v < NV - 1; ++v) _mm512_storeu_ps(y + 16 * v, acc[j][v]);
        _mm512_mask_storeu_ps(y + 16 * (NV - 1), last, acc[j][NV - 1]);
    }
}

// Arguments of one backward-weight micro-kernel call: UB (s,c) rows x NV groups of 16 k.
struct PairBwwArgs {
    const bf16* z;       // pair rows z at (input row p0*st + r, pixel 0), plus (s,c) row u0
    int64_t zrow;        // bf16 between the z rows of consecutive output rows
    int64_t zstep;       // bf16 between consecutive output pixel pairs (2 pixels * st * C pairs)
    const bf16* t;       // dy pairs at (p0, pair 0), the group's first channel
    int64_t rows, cols;  // output rows of the band, pixel pairs per row
    int64_t tstep;       // bf16 between consecutive pixel pairs of t (2 * Kp)
    int64_t imgs;        // images, each with its rows (z and t of the next one follow)
    int64_t zimg, timg;  // bf16 between the z / t of consecutive images
    float* dw;           // private dW at row u0, group offset; accumulated into
    int64_t dwstride;    // Kp
};

// acc[UB][NV] += sum over the images' band pixel pairs of z pair (u) * t pairs (16 k each).
template <int NV, int UB>
void bww_kernel(const PairBwwArgs& a) {
    __m512 acc[UB][NV];
#pragma GCC unroll 32
    for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(a.dw + i * a.dwstride + 16 * v);
    for (int64_t im = 0; im < a.imgs; ++im)
        for (int64_t rr = 0; rr < a.rows; ++rr) {
            const bf16* zq = a.z + im * a.zimg + rr * a.zrow;
            const bf16* tq = a.t + im * a.timg + rr * a.cols * a.tstep;
            for (int64_t q = 0; q < a.cols; ++q, zq += a.zstep, tq += a.tstep) {
                __m512i tv[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) tv[v] = _mm512_loadu_si512(tq + 32 * v);
#pragma GCC unroll 32
                for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) acc[i][v] = dot_bcast(acc[i][v], zq + 2 * i, tv[v]);
            }
        }
#pragma GCC unroll 32
    for (int i = 0; i < UB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(a.dw + i * a.dwstride + 16 * v, acc[i][v]);
}

using FwdFn = void (*)(const FwdArgsT<bf16>&);
using BwwFn = void (*)(const PairBwwArgs&);

// Tables of every block width 1..max for each NV (remainder runs use the smaller ones).
template <int NV, class Seq>
struct Row;
template <int NV, int... I>
struct Row<NV, std::integer_sequence<int, I...>> {
    static constexpr FwdFn fwd[] = {&fwd_kernel<NV, I + 1>...};
    static constexpr BwwFn bww[] = {&bww_kernel<NV, I + 1>...};
};

// Pixels (forward) / (s,c) rows (backward-weight) per call for NV zmm: NV*PX <= 28
// accumulators, as in the fp32 kernels; vdpbf16ps needs >= 6 in flight (PERF.md item 25).
constexpr int kPx[3] = {0, 28, 14};

FwdFn fwd_fn(int nv, int px) {
    return nv == 1 ? Row<1, std::make_integer_sequence<int, 28>>::fwd[px - 1]
                   : Row<2, std::make_integer_sequence<int, 14>>::fwd[px - 1];
}
BwwFn bww_fn(int nv, int ub) {
    return nv == 1 ? Row<1, std::make_integer_sequence<int, 28>>::bww[ub - 1]
                   : Row<2, std::make_integer_sequence<int, 14>>::bww[ub - 1];
}

// The engine's view of this path (conv_driver.h).
struct Micro {
    using Elem = bf16;
    static constexpr int kMaxNV = 2;
    static int fwd_px(int nv) { return kPx[nv]; }
    static FwdFn fwd(int nv, int px) { return fwd_fn(nv, px); }
    // d[0..16) = bf16(s[0..n)), zeros past n.
    static void copy_tail(bf16* d, const float* s, int n) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes(n), s)));
    }
    // d[2l], d[2l+1] = bf16(a[l]), bf16(b[l]) for l < 16 (b null: zeros).
    static void pair16(bf16* d, const float* a, const float* b, int n) {
        _mm512_storeu_si512(d, pairs16(a, b, n));
    }
};

// Rows [hp0, hp1) of z[hp][wp][c] = (xp[hp][wp][c], xp[hp][wp + st][c]) over the
// zero-padded image xp (Hp x Wp, pixels past Wp read as zero), written whole (padding too:
// the buffer holds other rows between calls) to z, row hp0 first.
void build_z(const float* x, int64_t H, int64_t W, int64_t C, int64_t pad, int64_t st,
             int64_t Wp, int64_t hp0, int64_t hp1, bf16* z) {
    for (int64_t hp = hp0; hp < hp1; ++hp) {
        bf16* zr = z + (hp - hp0) * Wp * C * 2;
        const int64_t h = hp - pad;
        if (h < 0 || h >= H) {
            std::memset(zr, 0, size_t(Wp * C) * 4);
            continue;
        }
        const float* xr = x + h * W * C;
        for (int64_t wp = 0; wp < Wp; ++wp) {
            const int64_t wa = wp - pad, wb = wp + st - pad;
            const float* a = wa >= 0 && wa < W ? xr + wa * C : nullptr;
            const float* b = wb >= 0 && wb < W ? xr + wb * C : nullptr;
            for (int64_t c = 0; c < C; c += 16) {
                const int n = int(std::min<int64_t>(16, C - c));
                _mm512_mask_storeu_epi32(zr + (wp * C + c) * 2, lanes(n),
                                         pairs16(a ? a + c : nullptr, b ? b + c : nullptr, n));
            }
        }
    }
}

// Rows [p0, p1) of t[p][j][k] = (dy[p][2j][k], dy[p][2j+1][k]) for j < ceil(Q/2), k < Kp
// (zeros past K and past Q) to t, row p0 first.
void build_t(const float* dy, int64_t p0, int64_t p1, int64_t Q, int64_t K, int64_t Kp, bf16* t) {
    const int64_t Qh = (Q + 1) / 2;
    for (int64_t p = p0; p < p1; ++p)
        for (int64_t j = 0; j < Qh; ++j) {
            const float* a = dy + (p * Q + 2 * j) * K;
            const float* b = 2 * j + 1 < Q ? a + K : nullptr;
            bf16* d = t + ((p - p0) * Qh + j) * Kp * 2;
            for (int64_t k = 0; k < Kp; k += 16) {
                const int n = int(std::min<int64_t>(16, K - k));
                _mm512_storeu_si512(d + 2 * k, pairs16(a + k, b ? b + k : nullptr, n));
            }
        }
}

// dw[r,s,c,k] = sum_{n,p,q} x[n, p*st-pad+r, q*st-pad+s, c] * dy[n,p,q,k], db[k] = sum dy.
// Threads split the batch, each summing into a private fp32 dW, reduced in fixed order.
// t and z are built per work unit into per-thread buffers of about 1 MiB (an L2), which the
// R x K-block x (s,c)-run kernel calls then sweep: a band of output rows of one image (large
// images) or several whole images (small ones: each kernel call sums over all of them, so
// the private dW, up to 4 MiB for ResNet-50, is read and written once per group, not per
// image; 1 MiB measured 1.2-1.6x faster than 256 KiB on ResNet-50's 7x7 and 14x14 layers).
void backward_weight(const float* x, const float* dy, float* dw, float* db, const ConvShape& s) {
    const int64_t st = s.stride, R = s.R, S = s.S, C = s.C, K = s.K, pad = s.pad;
    const int64_t P = s.P, Q = s.Q, H = s.H, W = s.W, Qh = (Q + 1) / 2;
    const int64_t kv = (K + kVec - 1) / kVec, Kp = kv * kVec;
    const int64_t U = S * C;  // one kernel row's (s, c) entries are contiguous in a z row
    const int64_t Wp = W + 2 * pad;
    const int64_t priv_len = R * U * Kp + Kp;
    const int T = rc::num_threads();
    // Bytes per output row: its t row and st z rows.
    const int64_t budget = 1024 << 10, row_bytes = Qh * Kp * 4 + st * Wp * C * 4;
    const int64_t band = std::min(P, std::max<int64_t>(1, budget / row_bytes));
    const int64_t per_thread = (s.N + T - 1) / T;
    const int64_t group =
        band < P ? 1 : std::min(per_thread, std::max<int64_t>(1, budget / (P * row_bytes)));
    const int64_t z_img = ((band - 1) * st + R) * Wp * C * 2, t_img = band * Qh * Kp * 2;  // bf16
    const List<KBlock> blocks = plan_kblocks(K, Micro::kMaxNV);
    float* priv = workspace(3, T * priv_len, true);
    bf16* z_all = workspace_as<bf16>(2, T * group * z_img, false);
    bf16* t_all = workspace_as<bf16>(1, T * group * t_img, false);
    int used = 1;
#pragma omp parallel num_threads(T)
    {
        const int nt = team_size(), t = team_rank();
#pragma omp single
        used = nt;
        float* mine = priv + t * priv_len;
        bf16* z = z_all + t * group * z_img;
        bf16* tb = t_all + t * group * t_img;
        const int64_t n1 = s.N * (t + 1) / nt;
        for (int64_t n0 = s.N * t / nt; n0 < n1; n0 += group)
            for (int64_t p0 = 0; p0 < P; p0 += band) {
                PairBwwArgs a;
                a.imgs = std::min(group, n1 - n0);
                a.rows = std::min(band, P - p0);
                for (int64_t i = 0; i < a.imgs; ++i) {
                    build_t(dy + (n0 + i) * P * Q * K, p0, p0 + a.rows, Q, K, Kp, tb + i * t_img);
                    build_z(x + (n0 + i) * H * W * C, H, W, C, pad, st, Wp, p0 * st,
                            (p0 + a.rows - 1) * st + R, z + i * z_img);
                }
                a.cols = Qh;
                a.zrow = st * Wp * C * 2;
                a.zstep = 2 * st * C * 2;
                a.tstep = 2 * Kp;
                a.zimg = z_img;
                a.timg = t_img;
                a.dwstride = Kp;
                for (int64_t r = 0; r < R; ++r)
                    for (const KBlock& kb : blocks) {
                        const int ubmax = kPx[kb.nv];
                        const int64_t nub = (U + ubmax - 1) / ubmax, ub = (U + nub - 1) / nub;
                        a.t = tb + kb.v0 * kVec * 2;
                        for (int64_t u0 = 0; u0 < U; u0 += ub) {
                            a.z = z + (r * Wp * C + u0) * 2;
                            a.dw = mine + (r * U + u0) * Kp + kb.v0 * kVec;
                            bww_fn(kb.nv, int(std::min(ub, U - u0)))(a);
                        }
                    }
            }
        for (int64_t n = s.N * t / nt; db && n < n1; ++n)
            sum_rows(dy + n * P * Q * K, P * Q, K, mine + R * U * Kp);
#pragma omp barrier
        reduce_dw(priv, priv_len, used, R * U, K, Kp, dw, db, t, nt);
    }
}

}  // namespace

namespace rc::avx512_bf16 {

const ConvKernels conv_bf16 = {forward<Micro>, backward_data<Micro>, backward_weight};

void round_to_bf16(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const int m = int(std::min<int64_t>(16, n - i));
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes(m), x + i));
        // bf16 -> float: the 16 bits become the top half of the float.
        _mm512_mask_storeu_ps(y + i, lanes(m),
                              _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
}

}  // namespace rc::avx512_bf16
