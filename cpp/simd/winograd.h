// winograd.h: Winograd F(MxM, 3x3), M = 2 or 4, for 3x3 stride-1 convolutions (NHWC, RSCK),
// all three passes. Compiled once per SIMD translation unit, after conv_driver.h (the TU
// supplies `struct Micro`, whose F type is 16 float lanes); winograd_kernels<M, Mk> are the
// passes as a ConvKernels set.
//
// Output tiles are MxM pixels; tile (n, ty, tx) reads the (M+2)x(M+2) input patch at rows
// M*ty - pad ... and columns M*tx - pad ... (zeros outside the image). With the
// (M+2)^2 transform points xi (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks"; points 0, +-1, +-2, inf):
//   forward          y   = A^T [ sum_c (G g G^T)_xi,c,k * (B^T d B)_xi,c ] A
//   backward-data    the forward of dy with the kernel rotated 180 degrees, C and K swapped
//                    and pad' = 2 - pad
//   backward-weight  dg  = G^T [ sum_tiles (B^T d B)_xi,c * (A dy A^T)_xi,k ] G
// so every pass is (M+2)^2 independent GEMMs (one per xi) between transforms. Per thread, a
// block of tiles is transformed into L2-sized buffers, multiplied by the direct conv's
// register-blocked micro-kernels (Micro::fwd with one tap, Micro::bww with one row) and
// transformed back. GEMM multiplies per output pixel: 9 direct, 4 for F(2x2), 2.25 for
// F(4x4); F(4x4) has larger rounding error (PERF.md item 13), still far inside 1e-4.
#pragma once
#include "simd/conv_driver.h"

namespace {

// 1-D transforms of F(M, 3); the 2-D ones apply them down columns, then along rows.
template <int M>
struct Wino;

template <>
struct Wino<2> {
    static constexpr int A = 4;  // points per dimension
    // e = B^T d, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
    template <class Mk, class F>
    static void bt(const F d[4], F e[4]) {
        e[0] = Mk::sub(d[0], d[2]);
        e[1] = Mk::add(d[1], d[2]);
        e[2] = Mk::sub(d[2], d[1]);
        e[3] = Mk::sub(d[1], d[3]);
    }
    // o = A^T m, A^T = [1 1 1 0; 0 1 -1 -1]
    template <class Mk, class F>
    static void at(const F m[4], F o[2]) {
        o[0] = Mk::add(Mk::add(m[0], m[1]), m[2]);
        o[1] = Mk::sub(Mk::sub(m[1], m[2]), m[3]);
    }
    // z = A g (backward-weight's dy transform)
    template <class Mk, class F>
    static void a(const F g[2], F z[4]) {
        z[0] = g[0];
        z[1] = Mk::add(g[0], g[1]);
        z[2] = Mk::sub(g[0], g[1]);
        z[3] = Mk::sub(Mk::zero(), g[1]);
    }
    // u = G h, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]; 16 independent lanes (vectorized)
    static void g(const float h[3][16], float u[4][16]) {
        for (int l = 0; l < 16; ++l) {
            u[0][l] = h[0][l];
            u[1][l] = 0.5f * (h[0][l] + h[1][l] + h[2][l]);
            u[2][l] = 0.5f * (h[0][l] - h[1][l] + h[2][l]);
            u[3][l] = h[2][l];
        }
    }
    // o = G^T h
    static void gt(const float h[4][16], float o[3][16]) {
        for (int l = 0; l < 16; ++l) {
            o[0][l] = h[0][l] + 0.5f * (h[1][l] + h[2][l]);
            o[1][l] = 0.5f * (h[1][l] - h[2][l]);
            o[2][l] = 0.5f * (h[1][l] + h[2][l]) + h[3][l];
        }
    }
};

template <>
struct Wino<4> {
    static constexpr int A = 6;
    // B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
    //        0 4 0 -5 0 1]
    template <class Mk, class F>
    static void bt(const F d[6], F e[6]) {
        const F four = Mk::set1(4.0f), two = Mk::set1(2.0f);
        const F t0 = Mk::fnma(four, d[2], d[4]), t1 = Mk::fnma(four, d[1], d[3]);
        const F t2 = Mk::sub(d[4], d[2]), t3 = Mk::mul(two, Mk::sub(d[3], d[1]));
        e[0] = Mk::fma(four, Mk::sub(d[0], d[2]), t2);
        e[1] = Mk::add(t0, t1);
        e[2] = Mk::sub(t0, t1);
        e[3] = Mk::add(t2, t3);
        e[4] = Mk::sub(t2, t3);
        e[5] = Mk::fma(four, Mk::sub(d[1], d[3]), Mk::sub(d[5], d[3]));
    }
    // A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
    template <class Mk, class F>
    static void at(const F m[6], F o[4]) {
        const F s12 = Mk::add(m[1], m[2]), d12 = Mk::sub(m[1], m[2]);
        const F s34 = Mk::add(m[3], m[4]), d34 = Mk::sub(m[3], m[4]);
        o[0] = Mk::add(Mk::add(m[0], s12), s34);
        o[1] = Mk::fma(Mk::set1(2.0f), d34, d12);
        o[2] = Mk::fma(Mk::set1(4.0f), s34, s12);
        o[3] = Mk::add(Mk::fma(Mk::set1(8.0f), d34, d12), m[5]);
    }
    template <class Mk, class F>
    static void a(const F g[4], F z[6]) {
        const F ev = Mk::add(g[0], g[2]), od = Mk::add(g[1], g[3]);
        const F ev4 = Mk::fma(Mk::set1(4.0f), g[2], g[0]);
        const F od8 = Mk::fma(Mk::set1(8.0f), g[3], Mk::add(g[1], g[1]));
        z[0] = g[0];
        z[1] = Mk::add(ev, od);
        z[2] = Mk::sub(ev, od);
        z[3] = Mk::add(ev4, od8);
        z[4] = Mk::sub(ev4, od8);
        z[5] = g[3];
    }
    // G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
    static void g(const float h[3][16], float u[6][16]) {
        constexpr float s6 = 1.0f / 6, s12 = 1.0f / 12, s24 = 1.0f / 24;
        for (int l = 0; l < 16; ++l) {
            const float a = h[0][l], b = h[1][l], c = h[2][l];
            u[0][l] = 0.25f * a;
            u[1][l] = -s6 * (a + b + c);
            u[2][l] = -s6 * (a - b + c);
            u[3][l] = s24 * a + s12 * b + s6 * c;
            u[4][l] = s24 * a - s12 * b + s6 * c;
            u[5][l] = c;
        }
    }
    static void gt(const float h[6][16], float o[3][16]) {
        constexpr float s6 = 1.0f / 6, s12 = 1.0f / 12, s24 = 1.0f / 24;
        for (int l = 0; l < 16; ++l) {
            o[0][l] = 0.25f * h[0][l] - s6 * (h[1][l] + h[2][l]) + s24 * (h[3][l] + h[4][l]);
            o[1][l] = s6 * (h[2][l] - h[1][l]) + s12 * (h[3][l] - h[4][l]);
            o[2][l] = s6 * (h[3][l] + h[4][l] - h[1][l] - h[2][l]) + h[5][l];
        }
    }
};

struct WinoGeom {
    int64_t N, H, W, C, K, P, Q, pad;
    int64_t TH, TW, tiles;  // tiles per column, per row, in all
};

inline WinoGeom wino_geom(int m, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                          int64_t pad) {
    WinoGeom g{N, H, W, C, K, H + 2 * pad - 2, W + 2 * pad - 2, pad, 0, 0, 0};
    g.TH = (g.P + m - 1) / m;
    g.TW = (g.Q + m - 1) / m;
    g.tiles = N * g.TH * g.TW;
    return g;
}

// Tiles per block so that the two per-thread buffers (npts x tiles x (Cp + Kp) floats) stay
// in the 1 MiB L2 with room for the packed weights.
inline int64_t wino_block(int npts, int64_t Cp, int64_t Kp) {
    return std::max<int64_t>(8, std::min<int64_t>(256, (320 << 10) / (4 * npts * (Cp + Kp))));
}

// Floats between consecutive transform-point planes: one cache line more than the plane, so
// the planes a tile touches do not all map to the same few L1 sets.
inline int64_t xi_stride(int64_t plane) { return plane + 16; }

// Tile coordinates walked in order, without a division per tile.
struct TileIter {
    int64_t n, ty, tx;
    TileIter(const WinoGeom& g, int64_t t)
        : n(t / (g.TH * g.TW)), ty(t % (g.TH * g.TW) / g.TW), tx(t % g.TW) {}
    void next(const WinoGeom& g) {
        if (++tx == g.TW) {
            tx = 0;
            if (++ty == g.TH) { ty = 0; ++n; }
        }
    }
};

// The part of an (N, rows, cols, ch) array that tiles [t0, t1) read: rows lo..hi-1 of the
// first tile's image through those of the last tile's image are one contiguous range.
// row0/span: first row of tile row 0 and rows per tile (input: -pad, M+2; dy: 0, M).
inline void tile_range(const float* a, const WinoGeom& g, int m, int64_t rows, int64_t cols,
                       int64_t ch, int64_t row0, int64_t span, int64_t t0, int64_t t1,
                       const float*& begin, const float*& end) {
    begin = end = nullptr;
    if (t0 >= t1) return;
    const TileIter s(g, t0), e(g, t1 - 1);
    const int64_t lo = std::max<int64_t>(0, m * s.ty + row0);
    const int64_t hi = std::min<int64_t>(rows, m * e.ty + row0 + span);
    begin = a + (s.n * rows + lo) * cols * ch;
    end = a + (e.n * rows + hi) * cols * ch;
}

// Prefetches (to L2) the next `lines` cache lines of [p, end): spread over the GEMM calls of
// a block, this brings the next block's input in while the current one computes.
inline void prefetch_some(const float*& p, const float* end, int64_t lines) {
    for (int64_t l = 0; l < lines && p < end; ++l, p += 16)
        _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
}

// B^T applied down input column w of a patch starting at row h0: 16 channels (n valid,
// zero-filled; zeros outside the image). Inside = the whole patch is in the image and
// n == 16, so no checks.
template <int M, class Mk, bool Inside>
inline void input_column(const float* xn, const WinoGeom& g, int64_t h0, int64_t w, int n,
                         typename Mk::F e[M + 2]) {
    using F = typename Mk::F;
    F d[M + 2];
    const bool col_in = w >= 0 && w < g.W;
#pragma GCC unroll 8
    for (int i = 0; i < M + 2; ++i) {
        const int64_t h = h0 + i;
        const float* p = xn + (h * g.W + w) * g.C;
        if (Inside) d[i] = Mk::load(p);
        else d[i] = !col_in || h < 0 || h >= g.H ? Mk::zero() : n == 16 ? Mk::load(p) : Mk::loadn(p, n);
    }
    Wino<M>::template bt<Mk>(d, e);
}

// One tile's B^T d B: B^T down each patch column into an L1 buffer (explicit, instead of
// 36 live registers that would spill for F(4x4)), then B^T along each row, stored at
// vt + xi*xs.
template <int M, class Mk, bool Inside>
inline void input_tile(const float* xn, const WinoGeom& g, int64_t h0, int64_t w0, int n,
                       float* vt, int64_t xs) {
    using F = typename Mk::F;
    constexpr int A = M + 2;
    alignas(64) float tmp[A][A][16];  // tmp[column][point]
#pragma GCC unroll 8
    for (int c = 0; c < A; ++c) {
        F col[A];
        input_column<M, Mk, Inside>(xn, g, h0, w0 + c, n, col);
#pragma GCC unroll 8
        for (int a = 0; a < A; ++a) Mk::store(tmp[c][a], col[a]);
    }
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) {
        F row[A], out[A];
#pragma GCC unroll 8
        for (int c = 0; c < A; ++c) row[c] = Mk::load(tmp[c][a]);
        Wino<M>::template bt<Mk>(row, out);
#pragma GCC unroll 8
        for (int b = 0; b < A; ++b) Mk::store(vt + (A * a + b) * xs, out[b]);
    }
}

// V = B^T d B for tiles [t0, t0 + nb) of x: tile j, channel block cb, point xi at
// v + xi*xs + cb*cbs + j*ts (16 lanes; lanes past C are zero).
template <int M, class Mk>
void input_block(const float* x, const WinoGeom& g, int64_t t0, int64_t nb, float* v,
                 int64_t xs, int64_t cbs, int64_t ts) {
    constexpr int A = M + 2;
    const int64_t CB = (g.C + 15) / 16;
    for (int64_t cb = 0; cb < CB; ++cb) {
        const int n = int(std::min<int64_t>(16, g.C - cb * 16));
        TileIter it(g, t0);
        for (int64_t j = 0; j < nb; ++j, it.next(g)) {
            const float* xn = x + it.n * g.H * g.W * g.C + cb * 16;
            const int64_t h0 = M * it.ty - g.pad, w0 = M * it.tx - g.pad;
            float* vt = v + cb * cbs + j * ts;
            if (n == 16 && h0 >= 0 && w0 >= 0 && h0 + A <= g.H && w0 + A <= g.W)
                input_tile<M, Mk, true>(xn, g, h0, w0, n, vt, xs);
            else
                input_tile<M, Mk, false>(xn, g, h0, w0, n, vt, xs);
        }
    }
}

// Forward over precomputed weights: wpk = G g G^T packed like pack_weights with the points
// as taps ([K block][xi][c][nv*16]); bias is Kp floats or null; y is (N,P,Q,K).
template <int M, class Mk>
void wino_forward(const float* x, const float* wpk, const float* bias, float* y,
                  const WinoGeom& g, const List<KBlock>& blocks) {
    using F = typename Mk::F;
    constexpr int A = M + 2, NP = A * A;
    const int64_t CB = (g.C + 15) / 16, Kp = (g.K + 15) / 16 * 16, KV = Kp / 16;
    const int64_t Tb = wino_block(NP, CB * 16, Kp);
    const int64_t vxs = xi_stride(CB * Tb * 16), mxs = xi_stride(Tb * Kp);
    const int64_t vlen = NP * vxs, mlen = NP * mxs;
    int64_t calls = 0;  // micro-kernel calls per full block
    for (const KBlock& kb : blocks) calls += NP * ((Tb + Mk::fwd_px(kb.nv) - 1) / Mk::fwd_px(kb.nv));
    const int T = rc::num_threads();
    float* bufs = workspace(2, T * (vlen + mlen), false);  // V lanes past C are written as 0
    static const int64_t kNoTap[1] = {0};
#pragma omp parallel num_threads(T)
    {
        const int nt = team_size(), t = team_rank();
        const int64_t i0 = g.tiles * t / nt, i1 = g.tiles * (t + 1) / nt;
        float* V = bufs + t * (vlen + mlen);  // [xi][cb][tile][16]
        float* Mb = V + vlen;                 // [xi][tile][Kp]
        for (int64_t b0 = i0; b0 < i1; b0 += Tb) {
            const int64_t nb = std::min(Tb, i1 - b0);
            input_block<M, Mk>(x, g, b0, nb, V, vxs, Tb * 16, 16);
            const float *pf, *pf_end;
            tile_range(x, g, M, g.H, g.W, g.C, -g.pad, A, b0 + nb, std::min(i1, b0 + nb + Tb), pf, pf_end);
            const int64_t pf_lines = (pf_end - pf) / 16 / calls + 1;
            // The block's output rows too: the output transform's stores then hit L2.
            const float *py, *py_end;
            tile_range(y, g, M, g.P, g.Q, g.K, 0, M, b0, b0 + nb, py, py_end);
            const int64_t py_lines = (py_end - py) / 16 / calls + 1;
            for (int xi = 0; xi < NP; ++xi)
                for (const KBlock& kb : blocks) {
                    FwdArgs a;
                    a.tap = kNoTap;
                    a.ntaps = 1;
                    a.cin = g.C;
                    a.plane = Tb * 16;
                    a.w = wpk + int64_t(kb.v0) * 16 * NP * g.C + xi * g.C * kb.nv * 16;
                    a.bias = nullptr;
                    a.ystep = Kp;
                    a.klast = 16;  // the buffer is padded to Kp: whole vectors
                    const int pxmax = Mk::fwd_px(kb.nv);
                    const int64_t nrun = (nb + pxmax - 1) / pxmax;
                    const int64_t base = nb / nrun, extra = nb % nrun;
                    for (int64_t r = 0, j = 0; r < nrun; ++r) {
                        const int cnt = int(base + (r < extra));
                        a.x = V + xi * vxs + j * 16;
                        a.y = Mb + xi * mxs + j * Kp + kb.v0 * 16;
                        Mk::fwd(kb.nv, cnt)(a);
                        prefetch_some(pf, pf_end, pf_lines);
                        prefetch_some(py, py_end, py_lines);
                        j += cnt;
                    }
                }
            // Y = A^T m A plus bias; only pixels inside (P, Q).
            TileIter it(g, b0);
            for (int64_t j = 0; j < nb; ++j, it.next(g)) {
                const int rows = int(std::min<int64_t>(M, g.P - M * it.ty));
                const int cols = int(std::min<int64_t>(M, g.Q - M * it.tx));
                float* yt = y + ((it.n * g.P + M * it.ty) * g.Q + M * it.tx) * g.K;
                for (int64_t kv = 0; kv < KV; ++kv) {
                    const float* m = Mb + j * Kp + kv * 16;
                    F f[M][A];  // A^T down each column
#pragma GCC unroll 8
                    for (int b = 0; b < A; ++b) {
                        F col[A], o[M];
#pragma GCC unroll 8
                        for (int a = 0; a < A; ++a) col[a] = Mk::load(m + (A * a + b) * mxs);
                        Wino<M>::template at<Mk>(col, o);
#pragma GCC unroll 8
                        for (int i = 0; i < M; ++i) f[i][b] = o[i];
                    }
                    const int nk = int(std::min<int64_t>(16, g.K - kv * 16));
                    const F bv = bias ? Mk::load(bias + kv * 16) : Mk::zero();
                    float* yk = yt + kv * 16;
                    if (rows == M && cols == M && nk == 16) {
#pragma GCC unroll 8
                        for (int i = 0; i < M; ++i) {
                            F o[M];
                            Wino<M>::template at<Mk>(f[i], o);
#pragma GCC unroll 8
                            for (int c = 0; c < M; ++c) Mk::store(yk + (i * g.Q + c) * g.K, Mk::add(o[c], bv));
                        }
                        continue;
                    }
                    for (int i = 0; i < rows; ++i) {
                        F o[M];
                        Wino<M>::template at<Mk>(f[i], o);
                        for (int c = 0; c < cols; ++c) Mk::storen(yk + (i * g.Q + c) * g.K, Mk::add(o[c], bv), nk);
                    }
                }
            }
        }
    }
}

// Forward and backward-data share this: the kernel entry (r, s) for reduction channel ci
// and output channel co is w[(3r + s)*C*K + ci*s_ci + co*s_co] (RSCK storage), read rotated
// by 180 degrees for backward-data; g.C and g.K are the GEMM's reduction and output widths.
template <int M, class Mk>
void wino_conv(const float* x, const float* w, const float* b, float* y, const WinoGeom& g,
               bool rotate, int64_t s_ci, int64_t s_co) {
    constexpr int A = M + 2, NP = A * A;
    const List<KBlock> blocks = plan_kblocks(g.K, Mk::kMaxNV);
    const int64_t Kp = (g.K + 15) / 16 * 16, CK = g.C * g.K;
    // U = G g G^T as [xi][ci][co] (RSCK-like, NP "taps"), then packed per K block; 16 output
    // channels at a time so the transform vectorizes, input channels split over threads.
    float* u = workspace(0, NP * CK, false);  // every entry is written
#pragma omp parallel for num_threads(rc::num_threads())
    for (int64_t ci = 0; ci < g.C; ++ci)
        for (int64_t co0 = 0; co0 < g.K; co0 += 16) {
            const int n = int(std::min<int64_t>(16, g.K - co0));
            float k3[3][3][16] = {}, col[3][16], h[A][3][16], o[A][16];
            for (int r = 0; r < 3; ++r)
                for (int t = 0; t < 3; ++t) {
                    const int64_t tap = rotate ? (2 - r) * 3 + 2 - t : r * 3 + t;
                    const float* src = w + tap * CK + ci * s_ci + co0 * s_co;
                    for (int l = 0; l < n; ++l) k3[r][t][l] = src[l * s_co];
                }
            for (int t = 0; t < 3; ++t) {
                for (int r = 0; r < 3; ++r) std::memcpy(col[r], k3[r][t], sizeof col[r]);
                Wino<M>::g(col, o);
                for (int a = 0; a < A; ++a) std::memcpy(h[a][t], o[a], sizeof o[a]);
            }
            for (int a = 0; a < A; ++a) {
                Wino<M>::g(h[a], o);
                for (int bb = 0; bb < A; ++bb)
                    std::memcpy(u + (A * a + bb) * CK + ci * g.K + co0, o[bb], n * 4);
            }
        }
    float* wpk = workspace(1, NP * g.C * Kp + Kp, true);  // zeroed: lanes past K, bias tail
    int64_t toff[NP];
    for (int xi = 0; xi < NP; ++xi) toff[xi] = xi * CK;
    pack_weights(wpk, blocks, NP, g.C, g.K, u, toff, g.K, 1);
    float* bias = wpk + NP * g.C * Kp;
    if (b) std::memcpy(bias, b, g.K * 4);
    wino_forward<M, Mk>(x, wpk, b ? bias : nullptr, y, g, blocks);
}

// Backward-weight. Per thread a private dU [xi][c][Kp]; per block of tiles the input
// transform V [xi][tile][Cp] and the dy transform Z = A dy A^T [xi][tile][Kp], then
// dU_xi += V_xi^T Z_xi by Micro::bww; finally a fixed-order reduction over threads and
// dg = G^T dU G per (c, k).
template <int M, class Mk>
void wino_backward_weight(const float* x, const float* dy, float* dw, float* db,
                          const WinoGeom& g) {
    using F = typename Mk::F;
    constexpr int A = M + 2, NP = A * A;
    const List<KBlock> blocks = plan_kblocks(g.K, Mk::kMaxNV);
    const int64_t CB = (g.C + 15) / 16, Cp = CB * 16, Kp = (g.K + 15) / 16 * 16, KV = Kp / 16;
    const int64_t Tb = wino_block(NP, Cp, Kp);
    const int64_t vxs = xi_stride(Tb * Cp), zxs = xi_stride(Tb * Kp);
    const int64_t vlen = NP * vxs, zlen = NP * zxs, ulen = NP * g.C * Kp;
    const int T = rc::num_threads();
    float* bufs = workspace(2, T * (vlen + zlen), false);
    float* priv = workspace(3, T * ulen, true);
    int64_t calls = 0;  // micro-kernel calls per block
    for (const KBlock& kb : blocks) {
        const int ubmax = Mk::bww_ub(kb.nv);
        calls += NP * ((g.C + ubmax - 1) / ubmax);
    }
    int used = 1;
#pragma omp parallel num_threads(T)
    {
        const int nt = team_size(), t = team_rank();
#pragma omp single
        used = nt;
        const int64_t i0 = g.tiles * t / nt, i1 = g.tiles * (t + 1) / nt;
        float* V = bufs + t * (vlen + zlen);
        float* Z = V + vlen;
        float* mine = priv + t * ulen;
        for (int64_t b0 = i0; b0 < i1; b0 += Tb) {
            const int64_t nb = std::min(Tb, i1 - b0);
            input_block<M, Mk>(x, g, b0, nb, V, vxs, 16, Cp);
            TileIter it(g, b0);
            for (int64_t j = 0; j < nb; ++j, it.next(g)) {
                const int rows = int(std::min<int64_t>(M, g.P - M * it.ty));
                const int cols = int(std::min<int64_t>(M, g.Q - M * it.tx));
                const float* dt = dy + ((it.n * g.P + M * it.ty) * g.Q + M * it.tx) * g.K;
                for (int64_t kv = 0; kv < KV; ++kv) {
                    const int nk = int(std::min<int64_t>(16, g.K - kv * 16));
                    F e[A][M];  // A applied down each dy column
                    for (int c = 0; c < M; ++c) {
                        F col[M], z[A];
                        for (int i = 0; i < M; ++i) {
                            const float* p = dt + (i * g.Q + c) * g.K + kv * 16;
                            col[i] = i >= rows || c >= cols ? Mk::zero()
                                     : nk == 16          ? Mk::load(p)
                                                         : Mk::loadn(p, nk);
                        }
                        Wino<M>::template a<Mk>(col, z);
                        for (int a = 0; a < A; ++a) e[a][c] = z[a];
                    }
                    float* zt = Z + j * Kp + kv * 16;
                    for (int a = 0; a < A; ++a) {
                        F z[A];
                        Wino<M>::template a<Mk>(e[a], z);
                        for (int bb = 0; bb < A; ++bb) Mk::store(zt + (A * a + bb) * zxs, z[bb]);
                    }
                }
            }
            const int64_t t1 = std::min(i1, b0 + nb + Tb);
            const float *px, *px_end, *pd, *pd_end;
            tile_range(x, g, M, g.H, g.W, g.C, -g.pad, A, b0 + nb, t1, px, px_end);
            tile_range(dy, g, M, g.P, g.Q, g.K, 0, M, b0 + nb, t1, pd, pd_end);
            const int64_t px_lines = (px_end - px) / 16 / calls + 1;
            const int64_t pd_lines = (pd_end - pd) / 16 / calls + 1;
            for (int xi = 0; xi < NP; ++xi)
                for (const KBlock& kb : blocks) {
                    BwwArgs a;
                    a.xrow = 0;
                    a.xpix = Cp;
                    a.dy = Z + xi * zxs + kb.v0 * 16;
                    a.rows = 1;
                    a.cols = nb;
                    a.kstride = Kp;
                    a.dwstride = Kp;
                    a.klast = 16;
                    const int ubmax = Mk::bww_ub(kb.nv);
                    const int64_t nub = (g.C + ubmax - 1) / ubmax, ub = (g.C + nub - 1) / nub;
                    for (int64_t u0 = 0; u0 < g.C; u0 += ub) {
                        a.x = V + xi * vxs + u0;
                        a.dw = mine + (xi * g.C + u0) * Kp + kb.v0 * 16;
                        Mk::bww(kb.nv, int(std::min(ub, g.C - u0)))(a);
                        prefetch_some(px, px_end, px_lines);
                        prefetch_some(pd, pd_end, pd_lines);
                    }
                }
        }
#pragma omp barrier
        // Sum the private copies in thread order, then dg = G^T dU G per (c, k), 16 k at a
        // time (vectorized).
        const int64_t c0 = g.C * t / nt, c1 = g.C * (t + 1) / nt;
        for (int64_t c = c0; c < c1; ++c)
            for (int64_t k0 = 0; k0 < g.K; k0 += 16) {
                float h[A][A][16], col[A][16], r3[3][16], o[3][A][16], row[A][16];
                for (int xi = 0; xi < NP; ++xi)
                    rc::reduce_private(priv + (xi * g.C + c) * Kp + k0, ulen, used, 16,
                                       h[xi / A][xi % A]);
                for (int bb = 0; bb < A; ++bb) {
                    for (int a = 0; a < A; ++a) std::memcpy(col[a], h[a][bb], sizeof col[a]);
                    Wino<M>::gt(col, r3);
                    for (int r = 0; r < 3; ++r) std::memcpy(o[r][bb], r3[r], sizeof r3[r]);
                }
                const int n = int(std::min<int64_t>(16, g.K - k0));
                for (int r = 0; r < 3; ++r) {
                    for (int bb = 0; bb < A; ++bb) std::memcpy(row[bb], o[r][bb], sizeof row[bb]);
                    Wino<M>::gt(row, r3);
                    for (int s = 0; s < 3; ++s)
                        std::memcpy(dw + ((r * 3 + s) * g.C + c) * g.K + k0, r3[s], n * 4);
                }
            }
    }
    if (db) {
        for (int64_t k = 0; k < g.K; ++k) db[k] = 0.0f;
        sum_rows(dy, g.N * g.P * g.Q, g.K, db);
    }
}

// The three passes for tile size M (ConvShape s of the user's convolution).
template <int M, class Mk>
void winograd_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
    wino_conv<M, Mk>(x, w, b, y, wino_geom(M, s.N, s.H, s.W, s.C, s.K, s.pad), false, s.K, 1);
}
template <int M, class Mk>
void winograd_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s) {
    wino_conv<M, Mk>(dy, w, nullptr, dx, wino_geom(M, s.N, s.P, s.Q, s.K, s.C, 2 - s.pad), true,
                     1, s.K);
}
template <int M, class Mk>
void winograd_backward_weight(const float* x, const float* dy, float* dw, float* db,
                              const ConvShape& s) {
    wino_backward_weight<M, Mk>(x, dy, dw, db, wino_geom(M, s.N, s.H, s.W, s.C, s.K, s.pad));
}
template <int M, class Mk>
constexpr rc::ConvKernels winograd_kernels = {winograd_forward<M, Mk>, winograd_backward_data<M, Mk>,
                                              winograd_backward_weight<M, Mk>};

}  // namespace
