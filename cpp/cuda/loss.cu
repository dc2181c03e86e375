// loss.cu: softmax cross-entropy with label smoothing, logits (N,K), labels (N,).
// Targets t = (1 - ls) * onehot(label) + ls / K. Per row, with z shifted by its max:
//   lse = log sum_j exp(z_j);   loss_row = lse - (1 - ls) * z_label - (ls / K) * sum_j z_j
//   dlogits_j = (softmax_j - t_j) / N
// One warp per row (lanes stride over K, fixed shuffle tree: deterministic); a second
// single-block kernel averages the row losses in fixed order into one device float, so the
// step never has to wait for the host. A row with a label outside [0, K) gets NaN loss and
// gradient, and the smallest such row index is recorded (atomicMin) for the bindings' check.
// dlogits may be logits itself (each lane reads its elements before it writes them).
#include <cmath>

#include "kernels.h"

namespace rc::cuda {
namespace {

constexpr int kRowsPerBlock = 4;  // warps per block

__device__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename Label>
__global__ void xent_rows(const float* logits, const Label* labels, int N, int K, float ls,
                          float* dlogits, float* row_loss, int32_t* bad_row) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
    if (row >= N) return;  // whole warps exit together
    const float* z = logits + (int64_t)row * K;
    float* d = dlogits + (int64_t)row * K;
    const int64_t lab = (int64_t)labels[row];
    if (lab < 0 || lab >= K) {
        for (int j = lane; j < K; j += 32) d[j] = NAN;
        if (lane == 0) {
            row_loss[row] = NAN;
            atomicMin(bad_row, row);
        }
        return;
    }
    // Read before the shuffles below, which every lane passes before any lane writes d: with
    // dlogits_out = logits (in place) z[lab] is overwritten by another lane.
    const float z_lab = z[lab];
    float mx = -INFINITY;
    for (int j = lane; j < K; j += 32) mx = fmaxf(mx, z[j]);
    mx = warp_max(mx);
    float se = 0.0f, sz = 0.0f;
    for (int j = lane; j < K; j += 32) {
        se += expf(z[j] - mx);
        sz += z[j] - mx;
    }
    se = warp_sum(se);
    sz = warp_sum(sz);
    const float lse = logf(se);
    const float inv_n = 1.0f / (float)N, off = ls / (float)K;
    for (int j = lane; j < K; j += 32) {
        const float t = (j == lab ? 1.0f - ls : 0.0f) + off;
        d[j] = (expf(z[j] - mx) / se - t) * inv_n;
    }
    if (lane == 0) row_loss[row] = lse - (1.0f - ls) * (z_lab - mx) - off * sz;
}

// One block of 256 threads: loss = sum(row_loss) / N, fixed-order tree.
__global__ void mean_kernel(const float* v, int n, float* out) {
    __shared__ float sh[256];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += 256) s += v[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = sh[0] / (float)n;
}

}  // namespace

void softmax_cross_entropy(const float* logits, const void* labels, bool labels_int64, int64_t N,
                           int64_t K, double label_smoothing, float* dlogits, float* loss,
                           int32_t* bad_row, cudaStream_t stream) {
    RC_CUDA_REQUIRE((N + kRowsPerBlock - 1) / kRowsPerBlock <= 0x7fffffff, "logits: too many rows");
    RC_CUDA_CHECK(cudaMemsetAsync(bad_row, 0x7f, sizeof(int32_t), stream));
    Scratch rows((size_t)N * sizeof(float));
    const unsigned grid = (unsigned)((N + kRowsPerBlock - 1) / kRowsPerBlock);
    const float ls = (float)label_smoothing;
    if (labels_int64)
        xent_rows<<<grid, 32 * kRowsPerBlock, 0, stream>>>(logits, static_cast<const int64_t*>(labels),
                                                           (int)N, (int)K, ls, dlogits,
                                                           rows.as<float>(), bad_row);
    else
        xent_rows<<<grid, 32 * kRowsPerBlock, 0, stream>>>(logits, static_cast<const int32_t*>(labels),
                                                           (int)N, (int)K, ls, dlogits,
                                                           rows.as<float>(), bad_row);
    RC_CUDA_LAUNCH_CHECK(stream, "softmax_cross_entropy (rows)");
    mean_kernel<<<1, 256, 0, stream>>>(rows.as<float>(), (int)N, loss);
    RC_CUDA_LAUNCH_CHECK(stream, "softmax_cross_entropy (mean)");
}

}  // namespace rc::cuda
