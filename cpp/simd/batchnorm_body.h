// batchnorm_body.h: the batch-norm range kernels (BatchNormKernels in simd/kernels.h: their
// contract), written once over a few vector primitives and included by three translation
// units, each inside its own namespace (rc::scalar in cpp/batchnorm.cpp, rc::avx2, rc::avx512
// in cpp/simd/), which export them as `batch_norm`, after defining in an anonymous namespace:
//   VL (lanes), V (vector type), vzero, vload, vstore, vloadn/vstoren (first n lanes, the
//   rest zero / untouched), vadd, vsub, vmul, vfma(a,b,c) = a*b+c, vrelu (max(v,0)),
//   vmask_pos(v, y) = (y > 0 ? v : 0), vacc_double(double* d, V v): d[0..VL) += v.
// Memory-bound: each kernel is one streaming pass; per-channel vectors are expanded to the
// pattern period P (a multiple of VL), so element i of a slice uses lane data [i % P].
// No include guard on purpose: it is meant to be included once per ISA namespace.

namespace {

// p + o, leaving an absent (null) optional array null.
inline const float* opt_off(const float* p, int64_t o) { return p ? p + o : p; }
inline float* opt_off(float* p, int64_t o) { return p ? p + o : p; }

// Two walks, chosen by the row length P (a row = one pattern period):
//  - short rows (P <= 64 floats): blocks of B = 4096/P rows (one contiguous 16 KiB run),
//    one column chunk at a time, per-channel values and float32 partial sums in registers,
//    sums flushed to float64 once per block (<= 256 float32 terms);
//  - long rows: every row front to back (a chunk-by-chunk walk across rows jumps P*4
//    bytes inside a page and defeats the hardware prefetchers: measured 3-4x slower);
//    float32 partial sums live in a 2P-float scratch (L1/L2) and are flushed to float64
//    every kFlushRows rows.
//    Rows of at least a page (P >= 1024) go two per sweep, which loads the per-channel
//    values and the scratch once per two rows; shorter rows go one at a time, because two
//    streams inside one page were measured to defeat the prefetchers again (2-3x slower).
constexpr int64_t kShortRow = 64;
constexpr int64_t kFlushRows = 16;
inline bool two_rows(int64_t P) { return P >= 1024; }
inline int64_t short_block_rows(int64_t P) { return 4096 / P; }

// Statistics over gb rows for U adjacent vectors of the pattern, with R interleaved
// accumulator sets over the rows (U*R = 4 dependency chains per sum hide FMA latency).
template <int U, int R>
inline void stats_chunk(const float* x, int64_t gb, int64_t P, const float* piv, double* s1,
                        double* s2) {
    V a[R][U], b[R][U], p[U];
    for (int u = 0; u < U; ++u) {
        p[u] = vload(piv + u * VL);
        for (int r = 0; r < R; ++r) a[r][u] = b[r][u] = vzero();
    }
    int64_t g = 0;
    for (; g + R <= gb; g += R)
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < U; ++u) {
                V d = vsub(vload(x + (g + r) * P + u * VL), p[u]);
                a[r][u] = vadd(a[r][u], d);
                b[r][u] = vfma(d, d, b[r][u]);
            }
    for (; g < gb; ++g)
        for (int u = 0; u < U; ++u) {
            V d = vsub(vload(x + g * P + u * VL), p[u]);
            a[0][u] = vadd(a[0][u], d);
            b[0][u] = vfma(d, d, b[0][u]);
        }
    for (int u = 0; u < U; ++u) {
        for (int r = 1; r < R; ++r) {
            a[0][u] = vadd(a[0][u], a[r][u]);
            b[0][u] = vadd(b[0][u], b[r][u]);
        }
        vacc_double(s1 + u * VL, a[0][u]);
        vacc_double(s2 + u * VL, b[0][u]);
    }
}

// Long rows: rows [0, G) into float scratch a1, a2 (P each), flushed every kFlushRows.
// Two rows per sweep for page-long rows (two_rows).
void stats_long(const float* x, int64_t G, int64_t P, const float* piv, float* a1, float* a2,
                double* s1, double* s2) {
    for (int64_t g0 = 0; g0 < G; g0 += kFlushRows) {
        const int64_t g1 = g0 + kFlushRows < G ? g0 + kFlushRows : G;
        for (int64_t j = 0; j < P; j += VL) {
            vstore(a1 + j, vzero());
            vstore(a2 + j, vzero());
        }
        int64_t g = g0;
        for (; two_rows(P) && g + 2 <= g1; g += 2)
            for (int64_t j = 0; j < P; j += VL) {
                const V p = vload(piv + j);
                const V d0 = vsub(vload(x + g * P + j), p), d1 = vsub(vload(x + (g + 1) * P + j), p);
                vstore(a1 + j, vadd(vload(a1 + j), vadd(d0, d1)));
                vstore(a2 + j, vfma(d1, d1, vfma(d0, d0, vload(a2 + j))));
            }
        for (; g < g1; ++g)
            for (int64_t j = 0; j < P; j += VL) {
                V d = vsub(vload(x + g * P + j), vload(piv + j));
                vstore(a1 + j, vadd(vload(a1 + j), d));
                vstore(a2 + j, vfma(d, d, vload(a2 + j)));
            }
        for (int64_t j = 0; j < P; j += VL) {
            vacc_double(s1 + j, vload(a1 + j));
            vacc_double(s2 + j, vload(a2 + j));
        }
    }
}

// The ReLU mask of the backward, recomputed from x: the forward's pre-activation
// (x - mean) * k1 + beta with k1 = gamma * rstd, the forward's scale, in the same operations,
// so it is positive exactly where the forward's output was (no need to keep or read y).
inline V relu_mask(V d, V xm, V k1, V beta) { return vmask_pos(d, vfma(xm, k1, beta)); }

// Backward sums over gb rows (same blocking as stats_chunk). MASK: dy' = dy masked by the
// fused ReLU (relu_mask; beta is the expanded beta pattern). DX (eval mode): also
// dx = k1 * dy' in the same pass. x is loaded before dx is stored, so dx may alias x or dy.
template <int U, int R, bool MASK, bool DX>
inline void bwd_chunk(const float* dy, const float* x, const float* beta, float* dx, int64_t gb,
                      int64_t P, const float* mean, const float* k1, double* sdy, double* sdyx) {
    V a[R][U], b[R][U], m[U], k[U], bt[U];
    for (int u = 0; u < U; ++u) {
        m[u] = vload(mean + u * VL);
        k[u] = MASK || DX ? vload(k1 + u * VL) : vzero();
        bt[u] = MASK ? vload(beta + u * VL) : vzero();
        for (int r = 0; r < R; ++r) a[r][u] = b[r][u] = vzero();
    }
    auto step = [&](int64_t off, int r, int u) {
        V g = vload(dy + off);
        const V xm = vsub(vload(x + off), m[u]);
        if (MASK) g = relu_mask(g, xm, k[u], bt[u]);
        if (DX) vstore(dx + off, vmul(g, k[u]));
        a[r][u] = vadd(a[r][u], g);
        b[r][u] = vfma(g, xm, b[r][u]);
    };
    int64_t g = 0;
    for (; g + R <= gb; g += R)
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < U; ++u) step((g + r) * P + u * VL, r, u);
    for (; g < gb; ++g)
        for (int u = 0; u < U; ++u) step(g * P + u * VL, 0, u);
    for (int u = 0; u < U; ++u) {
        for (int r = 1; r < R; ++r) {
            a[0][u] = vadd(a[0][u], a[r][u]);
            b[0][u] = vadd(b[0][u], b[r][u]);
        }
        vacc_double(sdy + u * VL, a[0][u]);
        vacc_double(sdyx + u * VL, b[0][u]);
    }
}

// One vector of the long-row backward sums at flat offset o: sd += dy', se += dy' (x - m).
template <bool MASK, bool DX>
inline void bwd_long_step(const float* dy, const float* x, float* dx, int64_t o, V m, V k, V bt,
                          V& sd, V& se) {
    V d = vload(dy + o);
    const V xm = vsub(vload(x + o), m);
    if (MASK) d = relu_mask(d, xm, k, bt);
    if (DX) vstore(dx + o, vmul(d, k));
    sd = vadd(sd, d);
    se = vfma(d, xm, se);
}

// Long rows: the backward sums through float scratch a1, a2 (P each), like stats_long.
template <bool MASK, bool DX>
void bwd_long(const float* dy, const float* x, const float* beta, float* dx, int64_t G,
              int64_t P, const float* mean, const float* k1, float* a1, float* a2, double* sdy,
              double* sdyx) {
    for (int64_t g0 = 0; g0 < G; g0 += kFlushRows) {
        const int64_t g1 = g0 + kFlushRows < G ? g0 + kFlushRows : G;
        for (int64_t j = 0; j < P; j += VL) {
            vstore(a1 + j, vzero());
            vstore(a2 + j, vzero());
        }
        int64_t g = g0;
        for (; two_rows(P) && g + 2 <= g1; g += 2)
            for (int64_t j = 0; j < P; j += VL) {
                const V m = vload(mean + j), k = vload(k1 + j);
                const V bt = MASK ? vload(beta + j) : vzero();
                V sd = vload(a1 + j), se = vload(a2 + j);
                bwd_long_step<MASK, DX>(dy, x, dx, g * P + j, m, k, bt, sd, se);
                bwd_long_step<MASK, DX>(dy, x, dx, (g + 1) * P + j, m, k, bt, sd, se);
                vstore(a1 + j, sd);
                vstore(a2 + j, se);
            }
        for (; g < g1; ++g)
            for (int64_t j = 0; j < P; j += VL) {
                const V m = vload(mean + j), k = vload(k1 + j);
                const V bt = MASK ? vload(beta + j) : vzero();
                V sd = vload(a1 + j), se = vload(a2 + j);
                bwd_long_step<MASK, DX>(dy, x, dx, g * P + j, m, k, bt, sd, se);
                vstore(a1 + j, sd);
                vstore(a2 + j, se);
            }
        for (int64_t j = 0; j < P; j += VL) {
            vacc_double(sdy + j, vload(a1 + j));
            vacc_double(sdyx + j, vload(a2 + j));
        }
    }
}

template <bool MASK, bool DX>
void bwd_reduce_impl(const float* dy, const float* x, const float* beta, float* dx, int64_t n,
                     int64_t P, const float* mean, const float* k1, float* scratch, double* sdy,
                     double* sdyx) {
    const int64_t G = n / P;
    if (P > kShortRow) {
        bwd_long<MASK, DX>(dy, x, beta, dx, G, P, mean, k1, scratch, scratch + P, sdy, sdyx);
    } else {
        const int64_t B = short_block_rows(P);
        for (int64_t g0 = 0; g0 < G; g0 += B) {
            const int64_t gb = G - g0 < B ? G - g0 : B, o = g0 * P;
            int64_t j = 0;
            for (; j + 4 * VL <= P; j += 4 * VL)
                bwd_chunk<4, 1, MASK, DX>(dy + o + j, x + o + j, opt_off(beta, j),
                                          opt_off(dx, o + j), gb, P, mean + j, k1 + j, sdy + j,
                                          sdyx + j);
            for (; j < P; j += VL)
                bwd_chunk<1, 4, MASK, DX>(dy + o + j, x + o + j, opt_off(beta, j),
                                          opt_off(dx, o + j), gb, P, mean + j, k1 + j, sdy + j,
                                          sdyx + j);
        }
    }
    // Tail: fewer than P elements (a partial pattern period), masked loads give zeros.
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V g = vloadn(dy + o + j, c);
        const V xm = vsub(vloadn(x + o + j, c), vloadn(mean + j, c));
        if (MASK) g = relu_mask(g, xm, vload(k1 + j), vload(beta + j));
        if (DX) vstoren(dx + o + j, vmul(g, vload(k1 + j)), c);
        vacc_double(sdy + j, g);
        vacc_double(sdyx + j, vmul(g, xm));
    }
}

// One output vector: relu?((x - mean) * scale + beta [+ r]). The BN value is rounded before
// the residual add, so the fused result equals batch norm followed by add_relu bit for bit.
template <bool RELU, bool ADD>
inline V apply_one(V x, V m, V s, V b, const float* r) {
    V v = vfma(vsub(x, m), s, b);
    if (ADD) v = vadd(v, vload(r));
    return RELU ? vrelu(v) : v;
}

// y = relu?((x - mean) * scale + beta [+ r]) over gb rows for U adjacent pattern vectors,
// whose per-channel values stay in registers for the whole block. r (ADD) is the residual.
template <int U, bool RELU, bool ADD>
inline void apply_chunk(const float* x, const float* r, float* y, int64_t gb, int64_t P,
                        const float* mean, const float* scale, const float* beta) {
    V m[U], s[U], b[U];
    for (int u = 0; u < U; ++u) {
        m[u] = vload(mean + u * VL);
        s[u] = vload(scale + u * VL);
        b[u] = vload(beta + u * VL);
    }
    for (int64_t g = 0; g < gb; ++g)
        for (int u = 0; u < U; ++u) {
            const int64_t o = g * P + u * VL;
            vstore(y + o, apply_one<RELU, ADD>(vload(x + o), m[u], s[u], b[u], opt_off(r, o)));
        }
}

// Long rows, front to back (two per sweep for page-long rows).
template <bool RELU, bool ADD>
void apply_long(const float* x, const float* r, float* y, int64_t G, int64_t P,
                const float* mean, const float* scale, const float* beta) {
    int64_t g = 0;
    for (; two_rows(P) && g + 2 <= G; g += 2)
        for (int64_t j = 0; j < P; j += VL) {
            const V m = vload(mean + j), s = vload(scale + j), b = vload(beta + j);
            const int64_t o0 = g * P + j, o1 = o0 + P;
            V v0 = apply_one<RELU, ADD>(vload(x + o0), m, s, b, opt_off(r, o0));
            V v1 = apply_one<RELU, ADD>(vload(x + o1), m, s, b, opt_off(r, o1));
            vstore(y + o0, v0);
            vstore(y + o1, v1);
        }
    for (; g < G; ++g)
        for (int64_t j = 0; j < P; j += VL)
            apply_chunk<1, RELU, ADD>(x + g * P + j, opt_off(r, g * P + j), y + g * P + j, 1, P,
                                      mean + j, scale + j, beta + j);
}

template <bool RELU, bool ADD>
void apply_impl(const float* x, const float* r, float* y, int64_t n, int64_t P,
                const float* mean, const float* scale, const float* beta) {
    const int64_t G = n / P;
    if (P > kShortRow) {
        apply_long<RELU, ADD>(x, r, y, G, P, mean, scale, beta);
    } else {
        const int64_t B = short_block_rows(P);
        for (int64_t g0 = 0; g0 < G; g0 += B) {
            const int64_t gb = G - g0 < B ? G - g0 : B, o = g0 * P;
            int64_t j = 0;
            for (; j + 4 * VL <= P; j += 4 * VL)
                apply_chunk<4, RELU, ADD>(x + o + j, opt_off(r, o + j), y + o + j, gb, P,
                                          mean + j, scale + j, beta + j);
            for (; j < P; j += VL)
                apply_chunk<1, RELU, ADD>(x + o + j, opt_off(r, o + j), y + o + j, gb, P,
                                          mean + j, scale + j, beta + j);
        }
    }
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V v = vfma(vsub(vloadn(x + o + j, c), vload(mean + j)), vload(scale + j), vload(beta + j));
        if (ADD) v = vadd(v, vloadn(r + o + j, c));
        vstoren(y + o + j, RELU ? vrelu(v) : v, c);
    }
}

// dx = k1 * dy' + k2 * (x - mean) + k3 [+ r] over gb rows for U adjacent pattern vectors;
// r (ADD, flat like dx) is another branch's gradient summed in the same pass, after the
// BN value is rounded (bit for bit a separate add).
template <bool MASK, bool ADD>
inline V bwd_one(V d, V xm, V a, V b, V c, V bt, const float* r) {
    if (MASK) d = relu_mask(d, xm, a, bt);
    V v = vfma(d, a, vfma(xm, b, c));
    return ADD ? vadd(v, vload(r)) : v;
}

template <int U, bool MASK, bool ADD>
inline void bwd_apply_chunk(const float* dy, const float* x, const float* beta, const float* r,
                            float* dx, int64_t gb, int64_t P, const float* mean, const float* k1,
                            const float* k2, const float* k3) {
    V m[U], a[U], b[U], c[U], bt[U];
    for (int u = 0; u < U; ++u) {
        m[u] = vload(mean + u * VL);
        a[u] = vload(k1 + u * VL);
        b[u] = vload(k2 + u * VL);
        c[u] = vload(k3 + u * VL);
        bt[u] = MASK ? vload(beta + u * VL) : vzero();
    }
    for (int64_t g = 0; g < gb; ++g)
        for (int u = 0; u < U; ++u) {
            const int64_t o = g * P + u * VL;
            const V xm = vsub(vload(x + o), m[u]);
            vstore(dx + o, bwd_one<MASK, ADD>(vload(dy + o), xm, a[u], b[u], c[u], bt[u],
                                              opt_off(r, o)));
        }
}

// Long rows, front to back (two per sweep for page-long rows).
template <bool MASK, bool ADD>
void bwd_apply_long(const float* dy, const float* x, const float* beta, const float* r,
                    float* dx, int64_t G, int64_t P, const float* mean, const float* k1,
                    const float* k2, const float* k3) {
    int64_t g = 0;
    for (; two_rows(P) && g + 2 <= G; g += 2)
        for (int64_t j = 0; j < P; j += VL) {
            const V m = vload(mean + j), a = vload(k1 + j), b = vload(k2 + j), c = vload(k3 + j);
            const V bt = MASK ? vload(beta + j) : vzero();
            for (int64_t o = g * P + j; o < (g + 2) * P; o += P) {
                const V xm = vsub(vload(x + o), m);
                vstore(dx + o, bwd_one<MASK, ADD>(vload(dy + o), xm, a, b, c, bt, opt_off(r, o)));
            }
        }
    for (; g < G; ++g)
        for (int64_t j = 0; j < P; j += VL)
            bwd_apply_chunk<1, MASK, ADD>(dy + g * P + j, x + g * P + j, opt_off(beta, j),
                                          opt_off(r, g * P + j), dx + g * P + j, 1, P, mean + j,
                                          k1 + j, k2 + j, k3 + j);
}

template <bool MASK, bool ADD>
void bwd_apply_impl(const float* dy, const float* x, const float* beta, const float* r,
                    float* dx, int64_t n, int64_t P, const float* mean, const float* k1,
                    const float* k2, const float* k3) {
    const int64_t G = n / P;
    if (P > kShortRow) {
        bwd_apply_long<MASK, ADD>(dy, x, beta, r, dx, G, P, mean, k1, k2, k3);
    } else {
        const int64_t B = short_block_rows(P);
        for (int64_t g0 = 0; g0 < G; g0 += B) {
            const int64_t gb = G - g0 < B ? G - g0 : B, o = g0 * P;
            int64_t j = 0;
            for (; j + 4 * VL <= P; j += 4 * VL)
                bwd_apply_chunk<4, MASK, ADD>(dy + o + j, x + o + j, opt_off(beta, j),
                                              opt_off(r, o + j), dx + o + j, gb, P, mean + j,
                                              k1 + j, k2 + j, k3 + j);
            for (; j < P; j += VL)
                bwd_apply_chunk<1, MASK, ADD>(dy + o + j, x + o + j, opt_off(beta, j),
                                              opt_off(r, o + j), dx + o + j, gb, P, mean + j,
                                              k1 + j, k2 + j, k3 + j);
        }
    }
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V d = vloadn(dy + o + j, c);
        const V xm = vsub(vloadn(x + o + j, c), vload(mean + j));
        if (MASK) d = relu_mask(d, xm, vload(k1 + j), vload(beta + j));
        V v = vfma(d, vload(k1 + j), vfma(xm, vload(k2 + j), vload(k3 + j)));
        if (ADD) v = vadd(v, vloadn(r + o + j, c));
        vstoren(dx + o + j, v, c);
    }
}

}  // namespace

void bn_stats(const float* x, int64_t n, int64_t P, const float* piv, float* scratch, double* s1,
              double* s2) {
    for (int64_t k = 0; k < P; ++k) s1[k] = s2[k] = 0.0;
    const int64_t G = n / P;
    if (P > kShortRow) {
        stats_long(x, G, P, piv, scratch, scratch + P, s1, s2);
    } else {
        const int64_t B = short_block_rows(P);
        for (int64_t g0 = 0; g0 < G; g0 += B) {
            const int64_t gb = G - g0 < B ? G - g0 : B;
            const float* xb = x + g0 * P;
            int64_t j = 0;
            for (; j + 4 * VL <= P; j += 4 * VL)
                stats_chunk<4, 1>(xb + j, gb, P, piv + j, s1 + j, s2 + j);
            for (; j < P; j += VL) stats_chunk<1, 4>(xb + j, gb, P, piv + j, s1 + j, s2 + j);
        }
    }
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V d = vsub(vloadn(x + o + j, c), vloadn(piv + j, c));
        vacc_double(s1 + j, d);
        vacc_double(s2 + j, vmul(d, d));
    }
}

void bn_apply(const float* x, const float* r, float* y, int64_t n, int64_t P, const float* mean,
              const float* scale, const float* beta, bool relu) {
    if (relu && r)
        apply_impl<true, true>(x, r, y, n, P, mean, scale, beta);
    else if (relu)
        apply_impl<true, false>(x, r, y, n, P, mean, scale, beta);
    else if (r)
        apply_impl<false, true>(x, r, y, n, P, mean, scale, beta);
    else
        apply_impl<false, false>(x, r, y, n, P, mean, scale, beta);
}

void bn_bwd_reduce(const float* dy, const float* x, const float* beta, float* dx, int64_t n,
                   int64_t P, const float* mean, const float* k1, float* scratch, double* sdy,
                   double* sdyx) {
    for (int64_t k = 0; k < P; ++k) sdy[k] = sdyx[k] = 0.0;
    if (beta && dx)
        bwd_reduce_impl<true, true>(dy, x, beta, dx, n, P, mean, k1, scratch, sdy, sdyx);
    else if (beta)
        bwd_reduce_impl<true, false>(dy, x, beta, dx, n, P, mean, k1, scratch, sdy, sdyx);
    else if (dx)
        bwd_reduce_impl<false, true>(dy, x, beta, dx, n, P, mean, k1, scratch, sdy, sdyx);
    else
        bwd_reduce_impl<false, false>(dy, x, beta, dx, n, P, mean, k1, scratch, sdy, sdyx);
}

void bn_bwd_apply(const float* dy, const float* x, const float* beta, const float* r, float* dx,
                  int64_t n, int64_t P, const float* mean, const float* k1, const float* k2,
                  const float* k3) {
    if (beta && r)
        bwd_apply_impl<true, true>(dy, x, beta, r, dx, n, P, mean, k1, k2, k3);
    else if (beta)
        bwd_apply_impl<true, false>(dy, x, beta, r, dx, n, P, mean, k1, k2, k3);
    else if (r)
        bwd_apply_impl<false, true>(dy, x, beta, r, dx, n, P, mean, k1, k2, k3);
    else
        bwd_apply_impl<false, false>(dy, x, beta, r, dx, n, P, mean, k1, k2, k3);
}

const BatchNormKernels batch_norm = {bn_stats, bn_apply, bn_bwd_reduce, bn_bwd_apply};
