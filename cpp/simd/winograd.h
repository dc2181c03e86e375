// winograd.h: Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (NHWC, RSCK), all three
// passes. Compiled once per SIMD translation unit, after conv_kernels.h's driver (the TU
// defines RC_CONV_DRIVER and supplies `struct Micro`, whose F type is 16 float lanes).
//
// Output tiles are 2x2 pixels; tile (n, ty, tx) reads the 4x4 input patch at rows
// 2*ty - pad .. +3 and columns 2*tx - pad .. +3 (zeros outside the image). With the 16
// transform points xi = 4*a + b (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks"):
//   forward          y   = A^T [ sum_c (G g G^T)_xi,c,k * (B^T d B)_xi,c ] A
//   backward-data    the forward of dy with the kernel rotated 180 degrees, C and K swapped
//                    and pad' = 2 - pad
//   backward-weight  dg  = G^T [ sum_tiles (B^T d B)_xi,c * (A dy A^T)_xi,k ] G
// so every pass is 16 independent GEMMs (one per xi) between transforms. Per thread, a block
// of tiles is transformed into L2-sized buffers, multiplied by the existing register-blocked
// micro-kernels (Micro::fwd with one tap, Micro::bww with one row) and transformed back:
// 16 multiplies per tile instead of 36, i.e. 2.25x fewer FLOPs in the GEMMs.
#pragma once
#ifdef RC_CONV_DRIVER

namespace {

constexpr int kXi = 16;  // transform points of a 4x4 tile

struct WinoGeom {
    int64_t N, H, W, C, K, P, Q, pad;
    int64_t TH, TW, tiles;  // tiles per column, per row, in all
};

inline WinoGeom wino_geom(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t pad) {
    WinoGeom g{N, H, W, C, K, H + 2 * pad - 2, W + 2 * pad - 2, pad, 0, 0, 0};
    g.TH = (g.P + 1) / 2;
    g.TW = (g.Q + 1) / 2;
    g.tiles = N * g.TH * g.TW;
    return g;
}

// Tiles per block so that the two per-thread buffers (16 x tiles x (Cp + Kp) floats) stay in
// the 1 MiB L2 with room for the packed weights.
inline int64_t wino_block(int64_t Cp, int64_t Kp) {
    return std::max<int64_t>(16, std::min<int64_t>(256, (320 << 10) / (64 * (Cp + Kp))));
}

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

// Floats between consecutive transform-point planes: one cache line more than the plane, so
// the 16 planes a tile touches do not all map to the same few L1 sets.
inline int64_t xi_stride(int64_t plane) { return plane + 16; }

// B^T applied down input column w of a patch starting at row h0: 16 channels (n valid,
// zero-filled; zeros outside the image). B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
template <class Mk>
inline void input_column(const float* xn, const WinoGeom& g, int64_t h0, int64_t w, int n,
                         typename Mk::F e[4]) {
    using F = typename Mk::F;
    F d[4];
    const bool col_in = w >= 0 && w < g.W;
    for (int i = 0; i < 4; ++i) {
        const int64_t h = h0 + i;
        const float* p = xn + (h * g.W + w) * g.C;
        d[i] = !col_in || h < 0 || h >= g.H ? Mk::zero() : n == 16 ? Mk::load(p) : Mk::loadn(p, n);
    }
    e[0] = Mk::sub(d[0], d[2]);
    e[1] = Mk::add(d[1], d[2]);
    e[2] = Mk::sub(d[2], d[1]);
    e[3] = Mk::sub(d[1], d[3]);
}

// V = B^T d B for tiles [t0, t0 + nb) of x: tile j, channel block cb, point xi at
// v + xi*xs + cb*cbs + j*ts (16 lanes; lanes past C are zero). Neighbouring tiles of a row
// share two input columns, so each column is transformed once.
template <class Mk>
void input_block(const float* x, const WinoGeom& g, int64_t t0, int64_t nb, float* v,
                 int64_t xs, int64_t cbs, int64_t ts) {
    using F = typename Mk::F;
    const int64_t CB = (g.C + 15) / 16;
    for (int64_t cb = 0; cb < CB; ++cb) {
        const int n = int(std::min<int64_t>(16, g.C - cb * 16));
        TileIter it(g, t0);
        F e[4][4];
        for (int64_t j = 0; j < nb; ++j, it.next(g)) {
            const float* xn = x + it.n * g.H * g.W * g.C + cb * 16;
            const int64_t h0 = 2 * it.ty - g.pad, w0 = 2 * it.tx - g.pad;
            if (j == 0 || it.tx == 0) {
                F c0[4], c1[4];
                input_column<Mk>(xn, g, h0, w0, n, c0);
                input_column<Mk>(xn, g, h0, w0 + 1, n, c1);
                for (int a = 0; a < 4; ++a) { e[a][0] = c0[a]; e[a][1] = c1[a]; }
            } else {
                for (int a = 0; a < 4; ++a) { e[a][0] = e[a][2]; e[a][1] = e[a][3]; }
            }
            F c2[4], c3[4];
            input_column<Mk>(xn, g, h0, w0 + 2, n, c2);
            input_column<Mk>(xn, g, h0, w0 + 3, n, c3);
            float* vt = v + cb * cbs + j * ts;
            for (int a = 0; a < 4; ++a) {
                e[a][2] = c2[a];
                e[a][3] = c3[a];
                Mk::store(vt + (4 * a + 0) * xs, Mk::sub(e[a][0], e[a][2]));
                Mk::store(vt + (4 * a + 1) * xs, Mk::add(e[a][1], e[a][2]));
                Mk::store(vt + (4 * a + 2) * xs, Mk::sub(e[a][2], e[a][1]));
                Mk::store(vt + (4 * a + 3) * xs, Mk::sub(e[a][1], e[a][3]));
            }
        }
    }
}

// Forward over precomputed weights: wpk = G g G^T packed like pack_weights with the 16
// points as taps ([K block][xi][c][nv*16]); bias is Kp floats or null; y is (N,P,Q,K).
template <class Mk>
void wino_forward(const float* x, const float* wpk, const float* bias, float* y,
                  const WinoGeom& g, const std::vector<KBlock>& blocks) {
    using F = typename Mk::F;
    const int64_t CB = (g.C + 15) / 16, Kp = (g.K + 15) / 16 * 16, KV = Kp / 16;
    const int64_t Tb = wino_block(CB * 16, Kp);
    const int64_t vxs = xi_stride(CB * Tb * 16), mxs = xi_stride(Tb * Kp);
    const int64_t vlen = kXi * vxs, mlen = kXi * mxs;
    const int T = rc::num_threads();
    Arr<float> vbuf(T * vlen), mbuf(T * mlen);
    static const int64_t kNoTap[1] = {0};
#pragma omp parallel num_threads(T)
    {
        const int nt = team_size(), t = team_rank();
        const int64_t i0 = g.tiles * t / nt, i1 = g.tiles * (t + 1) / nt;
        float* V = vbuf.data() + t * vlen;  // [xi][cb][tile][16]
        float* M = mbuf.data() + t * mlen;  // [xi][tile][Kp]
        for (int64_t b0 = i0; b0 < i1; b0 += Tb) {
            const int64_t nb = std::min(Tb, i1 - b0);
            input_block<Mk>(x, g, b0, nb, V, vxs, Tb * 16, 16);
            for (int xi = 0; xi < kXi; ++xi)
                for (const KBlock& kb : blocks) {
                    FwdArgs a;
                    a.tap = kNoTap;
                    a.ntaps = 1;
                    a.cin = g.C;
                    a.plane = Tb * 16;
                    a.w = wpk + int64_t(kb.v0) * 16 * kXi * g.C + xi * g.C * kb.nv * 16;
                    a.bias = nullptr;
                    a.ystep = Kp;
                    a.klast = 16;  // M is padded to Kp: whole vectors
                    const int pxmax = Mk::fwd_px(kb.nv);
                    const int64_t nrun = (nb + pxmax - 1) / pxmax;
                    const int64_t base = nb / nrun, extra = nb % nrun;
                    for (int64_t r = 0, j = 0; r < nrun; ++r) {
                        const int cnt = int(base + (r < extra));
                        a.x = V + xi * vxs + j * 16;
                        a.y = M + xi * mxs + j * Kp + kb.v0 * 16;
                        Mk::fwd(kb.nv, cnt)(a);
                        j += cnt;
                    }
                }
            // Y = A^T m A with A^T = [1 1 1 0; 0 1 -1 -1], plus bias; only pixels < (P, Q).
            TileIter it(g, b0);
            for (int64_t j = 0; j < nb; ++j, it.next(g)) {
                const int rows = int(std::min<int64_t>(2, g.P - 2 * it.ty));
                const int cols = int(std::min<int64_t>(2, g.Q - 2 * it.tx));
                float* yt = y + ((it.n * g.P + 2 * it.ty) * g.Q + 2 * it.tx) * g.K;
                for (int64_t kv = 0; kv < KV; ++kv) {
                    const float* m = M + j * Kp + kv * 16;
                    F f[2][4];
                    for (int b = 0; b < 4; ++b) {
                        const F m0 = Mk::load(m + (0 + b) * mxs), m1 = Mk::load(m + (4 + b) * mxs);
                        const F m2 = Mk::load(m + (8 + b) * mxs), m3 = Mk::load(m + (12 + b) * mxs);
                        f[0][b] = Mk::add(Mk::add(m0, m1), m2);
                        f[1][b] = Mk::sub(Mk::sub(m1, m2), m3);
                    }
                    const int nk = int(std::min<int64_t>(16, g.K - kv * 16));
                    const F bv = bias ? Mk::load(bias + kv * 16) : Mk::zero();
                    float* yk = yt + kv * 16;
                    if (rows == 2 && cols == 2 && nk == 16) {
                        for (int i = 0; i < 2; ++i) {
                            Mk::store(yk + i * g.Q * g.K, Mk::add(Mk::add(Mk::add(f[i][0], f[i][1]), f[i][2]), bv));
                            Mk::store(yk + (i * g.Q + 1) * g.K, Mk::add(Mk::sub(Mk::sub(f[i][1], f[i][2]), f[i][3]), bv));
                        }
                        continue;
                    }
                    for (int i = 0; i < rows; ++i) {
                        const F o[2] = {Mk::add(Mk::add(Mk::add(f[i][0], f[i][1]), f[i][2]), bv),
                                        Mk::add(Mk::sub(Mk::sub(f[i][1], f[i][2]), f[i][3]), bv)};
                        for (int c = 0; c < cols; ++c) Mk::storen(yk + (i * g.Q + c) * g.K, o[c], nk);
                    }
                }
            }
        }
    }
}

// (G g G^T)_xi for one (c, k) pair of the 3x3 kernel g (element (r, s) at g[r*gs_r + s*gs_s]),
// with G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]; written to u[xi*us].
inline void weight_transform(const float* g, int64_t gr, int64_t gs, float* u, int64_t us) {
    float h[4][3];
    for (int s = 0; s < 3; ++s) {
        const float g0 = g[0 * gr + s * gs], g1 = g[1 * gr + s * gs], g2 = g[2 * gr + s * gs];
        h[0][s] = g0;
        h[1][s] = 0.5f * (g0 + g1 + g2);
        h[2][s] = 0.5f * (g0 - g1 + g2);
        h[3][s] = g2;
    }
    for (int a = 0; a < 4; ++a) {
        u[(4 * a + 0) * us] = h[a][0];
        u[(4 * a + 1) * us] = 0.5f * (h[a][0] + h[a][1] + h[a][2]);
        u[(4 * a + 2) * us] = 0.5f * (h[a][0] - h[a][1] + h[a][2]);
        u[(4 * a + 3) * us] = h[a][2];
    }
}

// Forward and backward-data share this: the kernel entry (r, s) for reduction channel ci
// and output channel co is w[toff(r, s) + ci*s_ci + co*s_co]; (cin, kout) are the GEMM's
// reduction and output widths.
template <class Mk>
void wino_conv(const float* x, const float* w, const float* b, float* y, const WinoGeom& g,
               bool rotate, int64_t s_ci, int64_t s_co) {
    const std::vector<KBlock> blocks = plan_kblocks(g.K, Mk::kMaxNV);
    const int64_t Kp = (g.K + 15) / 16 * 16;
    // U as [xi][ci][co] (RSCK-like, 16 "taps"), then packed per K block.
    const int64_t CK = g.C * g.K;
    Arr<float> u(kXi * CK);
    // Kernel row and column strides in w: RSCK has 3*C*K floats per row, C*K per column.
    const int64_t gr = 3 * CK, gs = CK;
    for (int64_t ci = 0; ci < g.C; ++ci)
        for (int64_t co = 0; co < g.K; ++co) {
            const float* src = w + ci * s_ci + co * s_co;
            // The 180-degree rotation reads the kernel from its last entry backwards.
            if (rotate) weight_transform(src + 2 * gr + 2 * gs, -gr, -gs, u.data() + ci * g.K + co, CK);
            else weight_transform(src, gr, gs, u.data() + ci * g.K + co, CK);
        }
    Arr<float> wpk(kXi * g.C * Kp);
    Arr<int64_t> toff(kXi);
    for (int xi = 0; xi < kXi; ++xi) toff[xi] = xi * CK;
    pack_weights(wpk.data(), blocks, kXi, g.C, g.K, u.data(), toff.data(), g.K, 1);
    Arr<float> bias(b ? Kp : 0);
    if (b) std::memcpy(bias.data(), b, g.K * 4);
    wino_forward<Mk>(x, wpk.data(), b ? bias.data() : nullptr, y, g, blocks);
}

// Backward-weight. Per thread a private dU [xi][c][Kp]; per block of tiles the input
// transform V [xi][tile][Cp] and the dy transform Z = A dy A^T [xi][tile][Kp] (A =
// [1 0; 1 1; 1 -1; 0 -1]), then dU_xi += V_xi^T Z_xi by Micro::bww; finally a fixed-order
// reduction over threads and dg = G^T dU G per (c, k).
template <class Mk>
void wino_backward_weight(const float* x, const float* dy, float* dw, float* db,
                          const WinoGeom& g) {
    using F = typename Mk::F;
    const std::vector<KBlock> blocks = plan_kblocks(g.K, Mk::kMaxNV);
    const int64_t CB = (g.C + 15) / 16, Cp = CB * 16, Kp = (g.K + 15) / 16 * 16, KV = Kp / 16;
    const int64_t Tb = wino_block(Cp, Kp);
    const int64_t vxs = xi_stride(Tb * Cp), zxs = xi_stride(Tb * Kp);
    const int64_t vlen = kXi * vxs, zlen = kXi * zxs, ulen = kXi * g.C * Kp;
    const int T = rc::num_threads();
    Arr<float> vbuf(T * vlen), zbuf(T * zlen), priv(T * ulen);  // priv zeroed
    int used = 1;
#pragma omp parallel num_threads(T)
    {
        const int nt = team_size(), t = team_rank();
#pragma omp single
        used = nt;
        const int64_t i0 = g.tiles * t / nt, i1 = g.tiles * (t + 1) / nt;
        float* V = vbuf.data() + t * vlen;
        float* Z = zbuf.data() + t * zlen;
        float* mine = priv.data() + t * ulen;
        for (int64_t b0 = i0; b0 < i1; b0 += Tb) {
            const int64_t nb = std::min(Tb, i1 - b0);
            input_block<Mk>(x, g, b0, nb, V, vxs, 16, Cp);
            TileIter it(g, b0);
            for (int64_t j = 0; j < nb; ++j, it.next(g)) {
                const bool r1 = 2 * it.ty + 1 < g.P, c1 = 2 * it.tx + 1 < g.Q;
                const float* dt = dy + ((it.n * g.P + 2 * it.ty) * g.Q + 2 * it.tx) * g.K;
                for (int64_t kv = 0; kv < KV; ++kv) {
                    const int nk = int(std::min<int64_t>(16, g.K - kv * 16));
                    auto ld = [&](bool ok, int64_t off) {
                        if (!ok) return Mk::zero();
                        return nk == 16 ? Mk::load(dt + off + kv * 16) : Mk::loadn(dt + off + kv * 16, nk);
                    };
                    const F g00 = ld(true, 0), g01 = ld(c1, g.K);
                    const F g10 = ld(r1, g.Q * g.K), g11 = ld(r1 && c1, (g.Q + 1) * g.K);
                    // Rows: e[a][col] = (A g)[a] for each of the two columns.
                    const F e[4][2] = {{g00, g01},
                                       {Mk::add(g00, g10), Mk::add(g01, g11)},
                                       {Mk::sub(g00, g10), Mk::sub(g01, g11)},
                                       {Mk::sub(Mk::zero(), g10), Mk::sub(Mk::zero(), g11)}};
                    float* z = Z + j * Kp + kv * 16;
                    for (int a = 0; a < 4; ++a) {
                        Mk::store(z + (4 * a + 0) * zxs, e[a][0]);
                        Mk::store(z + (4 * a + 1) * zxs, Mk::add(e[a][0], e[a][1]));
                        Mk::store(z + (4 * a + 2) * zxs, Mk::sub(e[a][0], e[a][1]));
                        Mk::store(z + (4 * a + 3) * zxs, Mk::sub(Mk::zero(), e[a][1]));
                    }
                }
            }
            for (int xi = 0; xi < kXi; ++xi)
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
                    }
                }
        }
#pragma omp barrier
        // dg = G^T dU G per (c, k): G^T h = (h0 + .5 h1 + .5 h2, .5 h1 - .5 h2, .5 h1 + .5 h2 + h3).
        const int64_t c0 = g.C * t / nt, c1 = g.C * (t + 1) / nt;
        for (int64_t c = c0; c < c1; ++c)
            for (int64_t k = 0; k < g.K; ++k) {
                float h[4][4];
                for (int xi = 0; xi < kXi; ++xi) {
                    const float* src = priv.data() + (xi * g.C + c) * Kp + k;
                    float acc = src[0];
                    for (int u = 1; u < used; ++u) acc += src[u * ulen];
                    h[xi / 4][xi % 4] = acc;
                }
                float o[3][4];
                for (int b = 0; b < 4; ++b) {
                    o[0][b] = h[0][b] + 0.5f * (h[1][b] + h[2][b]);
                    o[1][b] = 0.5f * (h[1][b] - h[2][b]);
                    o[2][b] = 0.5f * (h[1][b] + h[2][b]) + h[3][b];
                }
                for (int r = 0; r < 3; ++r) {
                    float* d = dw + (r * 3 * g.C + c) * g.K + k;  // RSCK: (r, s, c, k)
                    d[0 * g.C * g.K] = o[r][0] + 0.5f * (o[r][1] + o[r][2]);
                    d[1 * g.C * g.K] = 0.5f * (o[r][1] - o[r][2]);
                    d[2 * g.C * g.K] = 0.5f * (o[r][1] + o[r][2]) + o[r][3];
                }
            }
    }
    if (db) {
        for (int64_t k = 0; k < g.K; ++k) db[k] = 0.0f;
        sum_rows(dy, g.N * g.P * g.Q, g.K, db);
    }
}

}  // namespace
#endif  // RC_CONV_DRIVER
