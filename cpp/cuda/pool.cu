// pool.cu: max pooling (with int32 argmax) and global average pooling, NHWC.
//   max forward:  one thread per output (n,p,q,c), c fastest (coalesced). The clipped
//                 window is scanned in row-major order with a strict '>' so ties keep the
//                 first maximum, and a NaN always wins (PyTorch; same rule as the CPU
//                 kernels). Padding is -inf, i.e. skipped: with pad <= k/2 every window holds
//                 a real pixel. argmax = h*W + w.
//   max backward: one thread per input (n,h,w,c) gathers dy from the windows that contain it
//                 and chose it, in (p,q) order: deterministic, no atomics.
//   avg forward:  y[n,c] = mean over h,w; backward dx[n,h,w,c] = dy[n,c] / (H*W).
#include "kernels.h"

namespace rc::cuda {
namespace {

struct PoolGeo {
    int N, H, W, C, k, stride, pad, P, Q;
};

PoolGeo pgeo(const PoolShape& s) {
    return {(int)s.N, (int)s.H, (int)s.W, (int)s.C, (int)s.k, (int)s.stride, (int)s.pad,
            (int)s.P, (int)s.Q};
}

__global__ void max_pool_fwd_kernel(const float* x, float* y, int32_t* argmax, PoolGeo g) {
    const int64_t total = (int64_t)g.N * g.P * g.Q * g.C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % g.C);
        int64_t t = i / g.C;
        const int q = (int)(t % g.Q);
        t /= g.Q;
        const int p = (int)(t % g.P), n = (int)(t / g.P);
        // Clipped window [h0, h1) x [w0, w1): non-empty because pad <= k/2.
        const int hs = p * g.stride - g.pad, ws = q * g.stride - g.pad;
        const int h0 = max(hs, 0), h1 = min(hs + g.k, g.H);
        const int w0 = max(ws, 0), w1 = min(ws + g.k, g.W);
        const float* xn = x + (int64_t)n * g.H * g.W * g.C + c;
        float best = -INFINITY;
        int arg = h0 * g.W + w0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w) {
                const float v = xn[((int64_t)h * g.W + w) * g.C];
                if (v > best || v != v) {
                    best = v;
                    arg = h * g.W + w;
                }
            }
        y[i] = best;
        argmax[i] = arg;
    }
}

__global__ void max_pool_bwd_kernel(const float* dy, const int32_t* argmax, float* dx, PoolGeo g) {
    const int64_t total = (int64_t)g.N * g.H * g.W * g.C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % g.C);
        int64_t t = i / g.C;
        const int w = (int)(t % g.W);
        t /= g.W;
        const int h = (int)(t % g.H), n = (int)(t / g.H);
        // Windows p with p*stride - pad <= h <= p*stride - pad + k - 1.
        const int hp = h + g.pad, wp = w + g.pad;
        const int p_lo = hp >= g.k ? (hp - g.k) / g.stride + 1 : 0;
        const int p_hi = min(hp / g.stride, g.P - 1);
        const int q_lo = wp >= g.k ? (wp - g.k) / g.stride + 1 : 0;
        const int q_hi = min(wp / g.stride, g.Q - 1);
        const int me = h * g.W + w;
        float s = 0.0f;
        for (int p = p_lo; p <= p_hi; ++p)
            for (int q = q_lo; q <= q_hi; ++q) {
                const int64_t o = (((int64_t)n * g.P + p) * g.Q + q) * g.C + c;
                if (argmax[o] == me) s += dy[o];
            }
        dx[i] = s;
    }
}

__global__ void gap_fwd_kernel(const float* x, float* y, int N, int HW, int C) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N * C; i += gridDim.x * blockDim.x) {
        const int n = i / C, c = i % C;
        const float* xn = x + (int64_t)n * HW * C + c;
        float s = 0.0f;
        for (int j = 0; j < HW; ++j) s += xn[(int64_t)j * C];
        y[i] = s / (float)HW;
    }
}

__global__ void gap_bwd_kernel(const float* dy, float* dx, int64_t N, int HW, int C) {
    const int64_t total = N * HW * C;
    const float inv = 1.0f / (float)HW;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const int64_t n = i / ((int64_t)HW * C);
        dx[i] = dy[n * C + c] * inv;
    }
}

}  // namespace

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, const PoolShape& s,
                        cudaStream_t stream) {
    RC_CUDA_REQUIRE(s.pad < s.k, "pad: must be < k");
    const int64_t total = s.N * s.P * s.Q * s.C;
    max_pool_fwd_kernel<<<grid_for(total, 256), 256, 0, stream>>>(x, y, argmax, pgeo(s));
    RC_CUDA_LAUNCH_CHECK(stream, "max_pool2d_forward");
}

void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, const PoolShape& s,
                         cudaStream_t stream) {
    const int64_t total = s.N * s.H * s.W * s.C;
    max_pool_bwd_kernel<<<grid_for(total, 256), 256, 0, stream>>>(dy, argmax, dx, pgeo(s));
    RC_CUDA_LAUNCH_CHECK(stream, "max_pool2d_backward");
}

void global_avg_pool_forward(const float* x, float* y, int64_t N, int64_t HW, int64_t C,
                             cudaStream_t stream) {
    gap_fwd_kernel<<<grid_for(N * C, 128), 128, 0, stream>>>(x, y, (int)N, (int)HW, (int)C);
    RC_CUDA_LAUNCH_CHECK(stream, "global_avg_pool_forward");
}

void global_avg_pool_backward(const float* dy, float* dx, int64_t N, int64_t HW, int64_t C,
                              cudaStream_t stream) {
    gap_bwd_kernel<<<grid_for(N * HW * C, 256), 256, 0, stream>>>(dy, dx, N, (int)HW, (int)C);
    RC_CUDA_LAUNCH_CHECK(stream, "global_avg_pool_backward");
}

}  // namespace rc::cuda
