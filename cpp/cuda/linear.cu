// linear.cu: fully connected layer on the GEMM of gemm.cuh. x (N,F), w (O,F), y (N,O).
//   forward  y  = x w^T + b        GEMM (N x O), inner F; B[f][o] = w[o][f]
//   backward dx = dy w             GEMM (N x F), inner O
//            dw = dy^T x           GEMM (O x F), inner N (split-K for large batches)
//            db = column sums of dy
#include "gemm.cuh"
#include "kernels.h"
#include "reduce.cuh"

namespace rc::cuda {
namespace {

// A loaders (see gemm.cuh): row-major A[m][k] = p[m*ld + k] and transposed A[m][k] = p[k*ld + m].
struct RowMajorA {
    const float* p;
    int ld;
    struct Row {
        int off;
    };
    struct Col {
        int k;
    };
    __device__ Row row(int m) const { return {m * ld}; }
    __device__ Col col(int k) const { return {k}; }
    __device__ float at(const Row& a, const Col& b) const { return __ldg(p + a.off + b.k); }
};

struct TransposedA {
    const float* p;
    int ld;
    struct Row {
        int m;
    };
    struct Col {
        int off;
    };
    __device__ Row row(int m) const { return {m}; }
    __device__ Col col(int k) const { return {k * ld}; }
    __device__ float at(const Row& a, const Col& b) const { return __ldg(p + b.off + a.m); }
};

// B loaders: row-major B[k][n] = p[k*ld + n] and transposed B[k][n] = p[n*ld + k].
struct RowMajor {
    const float* p;
    int ld;
    __device__ float operator()(int r, int c) const { return __ldg(p + (int64_t)r * ld + c); }
};

struct Transposed {
    const float* p;
    int ld;
    __device__ float operator()(int r, int c) const { return __ldg(p + (int64_t)c * ld + r); }
};

struct BiasStore {
    float* y;
    const float* b;
    int ld;
    __device__ void operator()(int, int m, int n, float v) const {
        y[(int64_t)m * ld + n] = b ? v + b[n] : v;
    }
};

struct MatrixCol {
    const float* p;
    int ld;
    __device__ void operator()(int r, int c, float (&v)[1]) const { v[0] = p[(int64_t)r * ld + c]; }
};

}  // namespace

void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N,
                    int64_t F, int64_t O, cudaStream_t stream) {
    gemm((int)N, (int)O, (int)F, RowMajorA{x, (int)F}, Transposed{w, (int)F},
         BiasStore{y, b, (int)O}, stream, "linear_forward");
}

void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, int64_t N, int64_t F, int64_t O, cudaStream_t stream) {
    if (dx)
        gemm((int)N, (int)F, (int)O, RowMajorA{dy, (int)O}, RowMajor{w, (int)F},
             BiasStore{dx, nullptr, (int)F}, stream, "linear_backward (dx)");
    gemm((int)O, (int)F, (int)N, TransposedA{dy, (int)O}, RowMajor{x, (int)F},
         BiasStore{dw, nullptr, (int)F}, stream, "linear_backward (dw)");
    if (db) {
        Scratch total((size_t)O * sizeof(double));
        column_sums<1>(MatrixCol{dy, (int)O}, (int)N, (int)O, total.as<double>(), stream,
                       "linear_backward (db)");
        doubles_to_floats(total.as<double>(), db, (int)O, 1.0, stream);
    }
}

}  // namespace rc::cuda
