// conv.cu: 2-D convolution as implicit GEMM on the tiled FP32 GEMM of gemm.cuh.
// Shapes: x (N,H,W,C) NHWC, w (R,S,C,K) RSCK, y and dy (N,P,Q,K), b and db (K,).
//   forward          y[m, k]   = sum_{(r,s,c)} x_im2col[m, (r,s,c)] * w[(r,s,c), k],  m = (n,p,q)
//   backward-data    dx[m, c]  = sum_{(r,s,k)} dy_col[m, (r,s,k)] * w[(r,s), c, k],   m = (n,h,w)
//                    where dy_col is dy[n, p, q, k] when h = p*stride - pad + r (same for w)
//   backward-weight  dw[(r,s,c), k] = sum_{(n,p,q)} x_im2col[(n,p,q), (r,s,c)] * dy[(n,p,q), k]
//                    (the transposed im2col as A; split-K over N*P*Q keeps the GPU busy)
// RSCK makes w a row-major (R*S*C, K) matrix and NHWC makes y, dy and dw row-major too, so
// only the im2col side needs index arithmetic.
#include "gemm.cuh"
#include "kernels.h"
#include "reduce.cuh"

namespace rc::cuda {
namespace {

// Geometry in int (bindings guarantee every tensor has < 2^31 elements).
struct Geo {
    int N, H, W, C, K, R, S, stride, pad, P, Q;
};

Geo geo(const ConvShape& s) {
    return {(int)s.N, (int)s.H, (int)s.W, (int)s.C, (int)s.K, (int)s.R, (int)s.S,
            (int)s.stride, (int)s.pad, (int)s.P, (int)s.Q};
}

// Forward A: row m = (n,p,q), column kk = (r,s,c) with c fastest.
struct FwdA {
    const float* x;
    Geo g;
    struct Row {
        int base, h0, w0;  // image n's offset; top-left input pixel of output (p,q)
    };
    struct Col {
        int r, s, c;
    };
    __device__ Row row(int m) const {
        const int q = m % g.Q, t = m / g.Q, p = t % g.P, n = t / g.P;
        return {n * g.H * g.W * g.C, p * g.stride - g.pad, q * g.stride - g.pad};
    }
    __device__ Col col(int kk) const {
        const int rs = kk / g.C;
        return {rs / g.S, rs % g.S, kk % g.C};
    }
    __device__ float at(const Row& a, const Col& b) const {
        const int h = a.h0 + b.r, w = a.w0 + b.s;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) return 0.0f;
        return __ldg(x + a.base + (h * g.W + w) * g.C + b.c);
    }
};

// Row-major (rows, ld) matrix as B: B[k][n] = p[k*ld + n].
struct RowMajor {
    const float* p;
    int ld;
    __device__ float operator()(int k, int n) const { return __ldg(p + (int64_t)k * ld + n); }
};

// y[m, k] = v + b[k].
struct BiasStore {
    float* y;
    const float* b;
    int ld;
    __device__ void operator()(int, int m, int n, float v) const {
        y[(int64_t)m * ld + n] = b ? v + b[n] : v;
    }
};

// Backward-data A: row m = (n,h,w), column kk = (r,s,k) with k fastest; nonzero only where
// (h + pad - r) and (w + pad - s) are non-negative multiples of stride inside the output.
struct DgradA {
    const float* dy;
    Geo g;
    struct Row {
        int base, hp, wp;  // image n's offset in dy; h + pad, w + pad
    };
    struct Col {
        int r, s, k;
    };
    __device__ Row row(int m) const {
        const int wi = m % g.W, t = m / g.W, hi = t % g.H, n = t / g.H;
        return {n * g.P * g.Q * g.K, hi + g.pad, wi + g.pad};
    }
    __device__ Col col(int kk) const {
        const int rs = kk / g.K;
        return {rs / g.S, rs % g.S, kk % g.K};
    }
    __device__ float at(const Row& a, const Col& b) const {
        int p = a.hp - b.r, q = a.wp - b.s;
        if (p < 0 || q < 0) return 0.0f;
        if (g.stride != 1) {
            if (p % g.stride || q % g.stride) return 0.0f;
            p /= g.stride;
            q /= g.stride;
        }
        if (p >= g.P || q >= g.Q) return 0.0f;
        return __ldg(dy + a.base + (p * g.Q + q) * g.K + b.k);
    }
};

// Backward-data B: B[(r,s,k)][c] = w[(r,s), c, k].
struct DgradB {
    const float* w;
    Geo g;
    __device__ float operator()(int kk, int c) const {
        const int k = kk % g.K, rs = kk / g.K;
        return __ldg(w + ((int64_t)rs * g.C + c) * g.K + k);
    }
};

// Backward-weight A: row m = (r,s,c), column kk = (n,p,q).
struct WgradA {
    const float* x;
    Geo g;
    struct Row {
        int r, s, c;
    };
    struct Col {
        int base, h0, w0;  // image n's offset in x; top-left input pixel of output (p,q)
    };
    __device__ Row row(int m) const {
        const int rs = m / g.C;
        return {rs / g.S, rs % g.S, m % g.C};
    }
    __device__ Col col(int kk) const {
        const int q = kk % g.Q, t = kk / g.Q, p = t % g.P, n = t / g.P;
        return {n * g.H * g.W * g.C, p * g.stride - g.pad, q * g.stride - g.pad};
    }
    __device__ float at(const Row& a, const Col& b) const {
        const int h = b.h0 + a.r, w = b.w0 + a.s;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) return 0.0f;
        return __ldg(x + b.base + (h * g.W + w) * g.C + a.c);
    }
};

// Column sums of a row-major (rows, cols) matrix: one value per column.
struct MatrixCol {
    const float* p;
    int ld;
    __device__ void operator()(int r, int c, float (&v)[1]) const { v[0] = p[(int64_t)r * ld + c]; }
};

}  // namespace

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                    cudaStream_t stream) {
    const Geo g = geo(s);
    gemm(g.N * g.P * g.Q, g.K, g.R * g.S * g.C, FwdA{x, g}, RowMajor{w, g.K}, BiasStore{y, b, g.K},
         stream, "conv2d_forward");
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s,
                          cudaStream_t stream) {
    const Geo g = geo(s);
    gemm(g.N * g.H * g.W, g.C, g.R * g.S * g.K, DgradA{dy, g}, DgradB{w, g},
         BiasStore{dx, nullptr, g.C}, stream, "conv2d_backward_data");
}

void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s, cudaStream_t stream) {
    const Geo g = geo(s);
    gemm(g.R * g.S * g.C, g.K, g.N * g.P * g.Q, WgradA{x, g}, RowMajor{dy, g.K},
         BiasStore{dw, nullptr, g.K}, stream, "conv2d_backward_weight");
    if (db) {
        Scratch total((size_t)g.K * sizeof(double));
        column_sums<1>(MatrixCol{dy, g.K}, g.N * g.P * g.Q, g.K, total.as<double>(), stream,
                       "conv2d_backward_weight (db)");
        doubles_to_floats(total.as<double>(), db, g.K, 1.0, stream);
    }
}

}  // namespace rc::cuda
