// linear.cpp: fully connected layer, y = x W^T + b with x (N,F), W (O,F), b (O,).
// Forward is gemm_nt (dot products of x rows with W rows); backward is two gemm_nn calls
// (dx = dy W, dw = dy^T x) and a column sum for db. This file holds the scalar kernels,
// the implementation list and the threading: outputs are cut into tiles that threads take whole,
// so each element is computed by one thread in a fixed order (no reductions across threads).
#include "linear.h"

#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {

namespace scalar {

void gemm_nt(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t lda, const float* b,
             int64_t ldb, const float* bias, float* c, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < Nn; ++j) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; ++k) s += a[i * lda + k] * b[j * ldb + k];
            c[i * ldc + j] = s + (bias ? bias[j] : 0.0f);
        }
}

void gemm_nn(int64_t M, int64_t Nn, int64_t K, const float* a, int64_t ars, int64_t aks,
             const float* b, int64_t ldb, float* c, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i) {
        float* ci = c + i * ldc;
        for (int64_t j = 0; j < Nn; ++j) ci[j] = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
            const float aik = a[i * ars + k * aks];
            const float* bk = b + k * ldb;
            for (int64_t j = 0; j < Nn; ++j) ci[j] += aik * bk[j];
        }
    }
}

const LinearKernels linear = {gemm_nt, gemm_nn};

}  // namespace scalar

namespace {

constexpr Impl<AnyCall, const LinearKernels*> kLinear[] = {
    RC_IF_AVX512({"gemm", Isa::avx512, nullptr, &avx512::linear})
    RC_IF_AVX2({"gemm", Isa::avx2, nullptr, &avx2::linear})
    {"gemm", Isa::scalar, nullptr, &scalar::linear},
};

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Tile sizes: multiples of every micro-kernel's block (rows 6/8 and 3/4, columns 16/32),
// small enough that ImageNet's fc (O=1000, F=2048) gives both threads many tiles.
constexpr int64_t kNtRows = 48, kNtCols = 48;
constexpr int64_t kNnRows = 48, kNnCols = 128;
// Below this many multiply-adds, one thread beats a parallel region.
constexpr int64_t kParallelMin = 1 << 17;

}  // namespace

void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t N,
                    int64_t F, int64_t O) {
    const auto nt = pick(kLinear).fn->gemm_nt;
    const int64_t tm = cdiv(N, kNtRows), tn = cdiv(O, kNtCols);
#pragma omp parallel for schedule(static) if (N * F * O >= kParallelMin) num_threads(rc::num_threads())
    for (int64_t t = 0; t < tm * tn; ++t) {
        const int64_t i0 = (t / tn) * kNtRows, j0 = (t % tn) * kNtCols;
        nt(imin(kNtRows, N - i0), imin(kNtCols, O - j0), F, x + i0 * F, F, w + j0 * F, F,
           b ? b + j0 : nullptr, y + i0 * O + j0, O);
    }
}

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t N, int64_t F, int64_t O) {
    const auto nn = pick(kLinear).fn->gemm_nn;
    // One pool of tiles: dx (N,F) tiles first (if wanted), then dw (O,F) tiles.
    const int64_t tcols = cdiv(F, kNnCols);
    const int64_t n_dx = dx ? cdiv(N, kNnRows) * tcols : 0;
    const int64_t n_dw = cdiv(O, kNnRows) * tcols;
#pragma omp parallel if (N * F * O >= kParallelMin) num_threads(rc::num_threads())
    {
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t t = 0; t < n_dx + n_dw; ++t) {
            const bool is_dx = t < n_dx;
            const int64_t u = is_dx ? t : t - n_dx;
            const int64_t i0 = (u / tcols) * kNnRows, j0 = (u % tcols) * kNnCols;
            const int64_t nc = imin(kNnCols, F - j0);
            if (is_dx)  // dx[i, j] = sum_o dy[i, o] w[o, j]
                nn(imin(kNnRows, N - i0), nc, O, dy + i0 * O, O, 1, w + j0, F, dx + i0 * F + j0, F);
            else        // dw[o, j] = sum_n dy[n, o] x[n, j]: a = dy^T via strides
                nn(imin(kNnRows, O - i0), nc, N, dy + i0, 1, O, x + j0, F, dw + i0 * F + j0, F);
        }
        // db[o] = sum_n dy[n, o], in n order; threads take disjoint column ranges.
        if (db) {
#pragma omp for schedule(static)
            for (int64_t o0 = 0; o0 < O; o0 += 256) {
                const int64_t o1 = imin(o0 + 256, O);
                for (int64_t o = o0; o < o1; ++o) db[o] = 0.0f;
                for (int64_t n = 0; n < N; ++n)
                    for (int64_t o = o0; o < o1; ++o) db[o] += dy[n * O + o];
            }
        }
    }
}

std::vector<OpImpls> linear_ops() {
    return any_call_ops(kLinear, {"linear_forward", "linear_backward"});
}

}  // namespace rc
