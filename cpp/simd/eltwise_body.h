// eltwise_body.h: the elementwise range kernels (EltwiseKernels in simd/kernels.h: their
// contract), written once over vector primitives and included by three translation units
// inside their own namespace (rc::scalar in cpp/eltwise.cpp, rc::avx2, rc::avx512 in
// cpp/simd/), which export them as `eltwise`. Each TU first defines,
// in an anonymous namespace: VL, V, vload, vstore, vloadn/vstoren (first n lanes), vadd,
// vrelu (max(v,0)), vmask_pos(v, y) = (y > 0 ? v : 0), and tile16(a, lda, b, ldb):
// b[j*ldb + i] = a[i*lda + j] for a 16 x 16 tile.
// No include guard on purpose: it is meant to be included once per ISA namespace.

namespace {

// Four vectors per iteration: independent work for the out-of-order core, one loop branch.
template <bool RELU>
void add_impl(const float* a, const float* b, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL)
        for (int u = 0; u < 4; ++u) {
            V v = vadd(vload(a + i + u * VL), vload(b + i + u * VL));
            vstore(y + i + u * VL, RELU ? vrelu(v) : v);
        }
    for (; i < n; i += VL) {
        const int64_t c = n - i < VL ? n - i : VL;
        V v = vadd(vloadn(a + i, c), vloadn(b + i, c));
        vstoren(y + i, RELU ? vrelu(v) : v, c);
    }
}

}  // namespace

void ew_relu(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL)
        for (int u = 0; u < 4; ++u) vstore(y + i + u * VL, vrelu(vload(x + i + u * VL)));
    for (; i < n; i += VL) {
        const int64_t c = n - i < VL ? n - i : VL;
        vstoren(y + i, vrelu(vloadn(x + i, c)), c);
    }
}

void ew_mask(const float* dy, const float* y, float* dx, int64_t n) {
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL)
        for (int u = 0; u < 4; ++u)
            vstore(dx + i + u * VL, vmask_pos(vload(dy + i + u * VL), vload(y + i + u * VL)));
    for (; i < n; i += VL) {
        const int64_t c = n - i < VL ? n - i : VL;
        vstoren(dx + i, vmask_pos(vloadn(dy + i, c), vloadn(y + i, c)), c);
    }
}

void ew_add(const float* a, const float* b, float* y, int64_t n, bool relu) {
    if (relu)
        add_impl<true>(a, b, y, n);
    else
        add_impl<false>(a, b, y, n);
}

void ew_transpose(const float* A, float* B, int64_t R, int64_t K, int64_t k0, int64_t k1) {
    // Columns [k0, k1) of A (R, K) become rows [k0, k1) of B (K, R): 16 x 16 register
    // tiles, the ragged edges (R or K not a multiple of 16) element by element.
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
        int64_t r = 0;
        for (; r + 16 <= R; r += 16) tile16(A + r * K + k, K, B + k * R + r, R);
        for (; r < R; ++r)
            for (int64_t j = k; j < k + 16; ++j) B[j * R + r] = A[r * K + j];
    }
    for (; k < k1; ++k)
        for (int64_t r = 0; r < R; ++r) B[k * R + r] = A[r * K + k];
}

const EltwiseKernels eltwise = {ew_relu, ew_mask, ew_add, ew_transpose};
