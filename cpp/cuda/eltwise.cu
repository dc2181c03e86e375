// eltwise.cu: ReLU, residual add (+ReLU) forward/backward, the option-A shortcut and
// NCHW <-> NHWC layout changes.
//   relu:     y = max(x, 0);           backward dx = dy * (y > 0) (mask from the output)
//   add:      y = a + b;  add_relu: y = max(a + b, 0); its backward is relu_backward, the same
//             gradient for both summands.
//   shortcut A: y (N,Ho,Wo,K)[n,i,j,k] = x[n, i*s, j*s, k - lo] for lo <= k < lo + C, else 0
//             (lo = (K-C)/2); backward: one thread per dx element gathers its dy (or 0 off
//             the stride grid), overwriting or adding (accumulate: the block's residual sum).
//   layout:   a batch of (C, HW) <-> (HW, C) transposes through 32x33 shared tiles (the pad
//             column avoids bank conflicts); both global reads and writes are coalesced.
#include "kernels.h"

namespace rc::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void relu_fwd_kernel(const float* x, float* y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = fmaxf(x[i], 0.0f);
}

__global__ void relu_bwd_kernel(const float* dy, const float* y, float* dx, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n, bool relu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float v = a[i] + b[i];
        y[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

__global__ void shortcut_a_fwd_kernel(const float* x, float* y, int64_t n, int H, int W, int C,
                                      int Ho, int Wo, int K, int s) {
    const int lo = (K - C) / 2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int k = (int)(i % K), c = k - lo;
        const int64_t pix = i / K;  // (n, ho, wo)
        const int wo = (int)(pix % Wo), ho = (int)(pix / Wo % Ho);
        const int64_t img = pix / ((int64_t)Wo * Ho);
        y[i] = (c >= 0 && c < C) ? x[((img * H + (int64_t)ho * s) * W + (int64_t)wo * s) * C + c] : 0.0f;
    }
}

__global__ void shortcut_a_bwd_kernel(const float* dy, float* dx, int64_t n, int H, int W, int C,
                                      int Ho, int Wo, int K, int s, bool accumulate) {
    const int lo = (K - C) / 2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const int64_t pix = i / C;  // (n, h, w)
        const int w = (int)(pix % W), h = (int)(pix / W % H);
        const int64_t img = pix / ((int64_t)W * H);
        float g = 0.0f;
        if (h % s == 0 && w % s == 0)
            g = dy[((img * Ho + h / s) * Wo + w / s) * K + lo + c];
        dx[i] = accumulate ? dx[i] + g : g;
    }
}

// in is (batch, rows, cols) row-major, out is (batch, cols, rows). Block (32, 8); grid
// (ceil(cols/32), ceil(rows/32), batch).
__global__ void transpose_kernel(const float* in, float* out, int rows, int cols) {
    __shared__ float tile[32][33];
    const int64_t base = (int64_t)blockIdx.z * rows * cols;
    const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int j = threadIdx.y; j < 32; j += 8) {
        const int r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[j][threadIdx.x] = in[base + (int64_t)r * cols + c];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += 8) {
        const int c = c0 + j, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[base + (int64_t)c * rows + r] = tile[threadIdx.x][j];
    }
}

void transpose(const float* in, float* out, int64_t batch, int64_t rows, int64_t cols,
               cudaStream_t stream, const char* name) {
    RC_CUDA_REQUIRE(batch <= 65535, std::string(name) + ": batch N must be <= 65535");
    RC_CUDA_REQUIRE((rows + 31) / 32 <= 65535, std::string(name) + ": too many rows for the grid");
    const dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((rows + 31) / 32), (unsigned)batch);
    transpose_kernel<<<grid, dim3(32, 8), 0, stream>>>(in, out, (int)rows, (int)cols);
    RC_CUDA_LAUNCH_CHECK(stream, name);
}

}  // namespace

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
    relu_fwd_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(x, y, n);
    RC_CUDA_LAUNCH_CHECK(stream, "relu_forward");
}

void relu_backward(const float* dy, const float* y, float* dx, int64_t n, cudaStream_t stream) {
    relu_bwd_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(dy, y, dx, n);
    RC_CUDA_LAUNCH_CHECK(stream, "relu_backward");
}

void add_forward(const float* a, const float* b, float* y, int64_t n, bool relu, cudaStream_t stream) {
    add_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(a, b, y, n, relu);
    RC_CUDA_LAUNCH_CHECK(stream, relu ? "add_relu_forward" : "add_forward");
}

void shortcut_a_forward(const float* x, float* y, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t K, int64_t stride, cudaStream_t stream) {
    const int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, n = N * Ho * Wo * K;
    shortcut_a_fwd_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        x, y, n, (int)H, (int)W, (int)C, (int)Ho, (int)Wo, (int)K, (int)stride);
    RC_CUDA_LAUNCH_CHECK(stream, "shortcut_a_forward");
}

void shortcut_a_backward(const float* dy, float* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                         int64_t K, int64_t stride, bool accumulate, cudaStream_t stream) {
    const int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, n = N * H * W * C;
    shortcut_a_bwd_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        dy, dx, n, (int)H, (int)W, (int)C, (int)Ho, (int)Wo, (int)K, (int)stride, accumulate);
    RC_CUDA_LAUNCH_CHECK(stream, "shortcut_a_backward");
}

void nchw_to_nhwc(const float* x, float* y, int64_t N, int64_t C, int64_t HW, cudaStream_t stream) {
    transpose(x, y, N, C, HW, stream, "nchw_to_nhwc");
}

void nhwc_to_nchw(const float* x, float* y, int64_t N, int64_t C, int64_t HW, cudaStream_t stream) {
    transpose(x, y, N, HW, C, stream, "nhwc_to_nchw");
}

}  // namespace rc::cuda
