// batchnorm_body.h: the batch-norm range kernels (declared in batchnorm_kernels.h), written
// once over a few vector primitives and included by three translation units, each inside its
// own namespace (rc::scalar in cpp/batchnorm.cpp, rc::avx2, rc::avx512 in cpp/simd/), after
// defining in an anonymous namespace:
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

// Groups of P floats summed in float32 before flushing to float64: ~16 KiB per block
// keeps the float error small (<= 4096/P terms) at a negligible flush cost.
inline int64_t bn_block_groups(int64_t P) { return P >= 4096 ? 1 : 4096 / P; }

// Statistics over gb groups for U adjacent vectors of the pattern, with R interleaved
// accumulator sets over the groups (U*R = 4 dependency chains per sum hide FMA latency).
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

// Backward sums over gb groups (same blocking as stats_chunk). MASK: dy' = dy * (y > 0).
// DX (eval mode): also dx = k1 * dy' in the same pass.
template <int U, int R, bool MASK, bool DX>
inline void bwd_chunk(const float* dy, const float* x, const float* y, float* dx, int64_t gb,
                      int64_t P, const float* mean, const float* k1, double* sdy, double* sdyx) {
    V a[R][U], b[R][U], m[U], k[U];
    for (int u = 0; u < U; ++u) {
        m[u] = vload(mean + u * VL);
        k[u] = DX ? vload(k1 + u * VL) : vzero();
        for (int r = 0; r < R; ++r) a[r][u] = b[r][u] = vzero();
    }
    auto step = [&](int64_t off, int r, int u) {
        V g = vload(dy + off);
        if (MASK) g = vmask_pos(g, vload(y + off));
        if (DX) vstore(dx + off, vmul(g, k[u]));
        a[r][u] = vadd(a[r][u], g);
        b[r][u] = vfma(g, vsub(vload(x + off), m[u]), b[r][u]);
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

template <bool MASK, bool DX>
void bwd_reduce_impl(const float* dy, const float* x, const float* y, float* dx, int64_t n,
                     int64_t P, const float* mean, const float* k1, double* sdy, double* sdyx) {
    const int64_t G = n / P, B = bn_block_groups(P);
    for (int64_t g0 = 0; g0 < G; g0 += B) {
        const int64_t gb = G - g0 < B ? G - g0 : B, o = g0 * P;
        int64_t j = 0;
        for (; j + 4 * VL <= P; j += 4 * VL)
            bwd_chunk<4, 1, MASK, DX>(dy + o + j, x + o + j, opt_off(y, o + j), opt_off(dx, o + j), gb, P,
                                      mean + j, k1 + j, sdy + j, sdyx + j);
        for (; j < P; j += VL)
            bwd_chunk<1, 4, MASK, DX>(dy + o + j, x + o + j, opt_off(y, o + j), opt_off(dx, o + j), gb, P,
                                      mean + j, k1 + j, sdy + j, sdyx + j);
    }
    // Tail: fewer than P elements (a partial pattern period), masked loads give zeros.
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V g = vloadn(dy + o + j, c);
        if (MASK) g = vmask_pos(g, vloadn(y + o + j, c));
        if (DX) vstoren(dx + o + j, vmul(g, vload(k1 + j)), c);
        vacc_double(sdy + j, g);
        vacc_double(sdyx + j, vmul(g, vsub(vloadn(x + o + j, c), vloadn(mean + j, c))));
    }
}

// y = relu?((x - mean) * scale + beta) over n elements; RELU fixed at compile time.
template <bool RELU>
void apply_impl(const float* x, float* y, int64_t n, int64_t P, const float* mean,
                const float* scale, const float* beta) {
    const int64_t G = n / P;
    for (int64_t g = 0; g < G; ++g) {
        const float* xg = x + g * P;
        float* yg = y + g * P;
        for (int64_t j = 0; j < P; j += VL) {
            V v = vfma(vsub(vload(xg + j), vload(mean + j)), vload(scale + j), vload(beta + j));
            vstore(yg + j, RELU ? vrelu(v) : v);
        }
    }
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V v = vfma(vsub(vloadn(x + o + j, c), vload(mean + j)), vload(scale + j), vload(beta + j));
        vstoren(y + o + j, RELU ? vrelu(v) : v, c);
    }
}

// dx = k1 * dy' + k2 * (x - mean) + k3 over n elements.
template <bool MASK>
void bwd_apply_impl(const float* dy, const float* x, const float* y, float* dx, int64_t n,
                    int64_t P, const float* mean, const float* k1, const float* k2,
                    const float* k3) {
    const int64_t G = n / P;
    for (int64_t g = 0; g < G; ++g) {
        const int64_t o = g * P;
        for (int64_t j = 0; j < P; j += VL) {
            V d = vload(dy + o + j);
            if (MASK) d = vmask_pos(d, vload(y + o + j));
            V t = vfma(vsub(vload(x + o + j), vload(mean + j)), vload(k2 + j), vload(k3 + j));
            vstore(dx + o + j, vfma(d, vload(k1 + j), t));
        }
    }
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V d = vloadn(dy + o + j, c);
        if (MASK) d = vmask_pos(d, vloadn(y + o + j, c));
        V t = vfma(vsub(vloadn(x + o + j, c), vload(mean + j)), vload(k2 + j), vload(k3 + j));
        vstoren(dx + o + j, vfma(d, vload(k1 + j), t), c);
    }
}

}  // namespace

void bn_stats(const float* x, int64_t n, int64_t P, const float* piv, double* s1, double* s2) {
    for (int64_t k = 0; k < P; ++k) s1[k] = s2[k] = 0.0;
    const int64_t G = n / P, B = bn_block_groups(P);
    for (int64_t g0 = 0; g0 < G; g0 += B) {
        const int64_t gb = G - g0 < B ? G - g0 : B;
        const float* xb = x + g0 * P;
        int64_t j = 0;
        for (; j + 4 * VL <= P; j += 4 * VL) stats_chunk<4, 1>(xb + j, gb, P, piv + j, s1 + j, s2 + j);
        for (; j < P; j += VL) stats_chunk<1, 4>(xb + j, gb, P, piv + j, s1 + j, s2 + j);
    }
    const int64_t o = G * P, rem = n - o;
    for (int64_t j = 0; j < rem; j += VL) {
        const int64_t c = rem - j < VL ? rem - j : VL;
        V d = vsub(vloadn(x + o + j, c), vloadn(piv + j, c));
        vacc_double(s1 + j, d);
        vacc_double(s2 + j, vmul(d, d));
    }
}

void bn_apply(const float* x, float* y, int64_t n, int64_t P, const float* mean,
              const float* scale, const float* beta, bool relu) {
    if (relu)
        apply_impl<true>(x, y, n, P, mean, scale, beta);
    else
        apply_impl<false>(x, y, n, P, mean, scale, beta);
}

void bn_bwd_reduce(const float* dy, const float* x, const float* y, float* dx, int64_t n,
                   int64_t P, const float* mean, const float* k1, double* sdy, double* sdyx) {
    for (int64_t k = 0; k < P; ++k) sdy[k] = sdyx[k] = 0.0;
    if (y && dx)
        bwd_reduce_impl<true, true>(dy, x, y, dx, n, P, mean, k1, sdy, sdyx);
    else if (y)
        bwd_reduce_impl<true, false>(dy, x, y, dx, n, P, mean, k1, sdy, sdyx);
    else if (dx)
        bwd_reduce_impl<false, true>(dy, x, y, dx, n, P, mean, k1, sdy, sdyx);
    else
        bwd_reduce_impl<false, false>(dy, x, y, dx, n, P, mean, k1, sdy, sdyx);
}

void bn_bwd_apply(const float* dy, const float* x, const float* y, float* dx, int64_t n,
                  int64_t P, const float* mean, const float* k1, const float* k2,
                  const float* k3) {
    if (y)
        bwd_apply_impl<true>(dy, x, y, dx, n, P, mean, k1, k2, k3);
    else
        bwd_apply_impl<false>(dy, x, y, dx, n, P, mean, k1, k2, k3);
}
