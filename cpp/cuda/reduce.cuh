// reduce.cuh: deterministic per-column sums over a row-major (M, C) view, the reduction
// shape of every per-channel statistic in NHWC (batch-norm sums, bias gradients).
//
// Stage 1 (colsum_partial): the M rows are cut into G chunks that depend only on M; block
// (blockIdx.x, blockIdx.y = g) sums chunk g for 32 columns, 8 rows per step, then adds the 8
// row-partials in fixed order. Stage 2 (colsum_finish) adds the G chunk sums in order in
// double. No atomics, so the result is bitwise reproducible run to run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_common.cuh"

namespace rc::cuda {

// Chunking of M rows: at most 256 chunks of at least 64 rows.
struct ColChunks {
    int G, rows;
};
inline ColChunks col_chunks(int M) {
    int G = (M + 63) / 64;
    if (G > 256) G = 256;
    if (G < 1) G = 1;
    return {G, (M + G - 1) / G};
}

// F: __device__ void operator()(int row, int col, float (&v)[NOUT]) const.
// partial is (NOUT, G, C).
template <int NOUT, class F>
__global__ void colsum_partial(F f, int M, int C, int rows_per_chunk, float* partial) {
    __shared__ float sh[NOUT][8][32];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.x * 32 + tx;
    const int g = blockIdx.y;
    const int r0 = g * rows_per_chunk;
    const int r1 = min(M, r0 + rows_per_chunk);
    float acc[NOUT] = {};
    if (c < C) {
        for (int r = r0 + ty; r < r1; r += 8) {
            float v[NOUT];
            f(r, c, v);
#pragma unroll
            for (int o = 0; o < NOUT; ++o) acc[o] += v[o];
        }
    }
#pragma unroll
    for (int o = 0; o < NOUT; ++o) sh[o][ty][tx] = acc[o];
    __syncthreads();
    if (ty == 0 && c < C) {
#pragma unroll
        for (int o = 0; o < NOUT; ++o) {
            float s = 0.0f;
            for (int t = 0; t < 8; ++t) s += sh[o][t][tx];
            partial[((int64_t)o * gridDim.y + g) * C + c] = s;
        }
    }
}

// total[o*C + c] = sum_g partial[o][g][c], in double.
template <int NOUT>
__global__ void colsum_finish(const float* partial, int G, int C, double* total) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < NOUT * C; i += gridDim.x * blockDim.x) {
        const int o = i / C, c = i % C;
        double s = 0.0;
        for (int g = 0; g < G; ++g) s += partial[((int64_t)o * G + g) * C + c];
        total[i] = s;
    }
}

// Runs both stages; total (NOUT*C doubles) must be device memory.
template <int NOUT, class F>
void column_sums(F f, int M, int C, double* total, cudaStream_t stream, const char* name) {
    const ColChunks ch = col_chunks(M);
    Scratch partial((size_t)NOUT * ch.G * C * sizeof(float));
    const dim3 grid((C + 31) / 32, ch.G), block(32, 8);
    colsum_partial<NOUT><<<grid, block, 0, stream>>>(f, M, C, ch.rows, partial.as<float>());
    RC_CUDA_LAUNCH_CHECK(stream, name);
    colsum_finish<NOUT><<<grid_for((int64_t)NOUT * C, 128), 128, 0, stream>>>(partial.as<float>(), ch.G, C, total);
    RC_CUDA_LAUNCH_CHECK(stream, name);
}

// Converts a double vector to float (out[i] = scale * in[i]).
void doubles_to_floats(const double* in, float* out, int n, double scale, cudaStream_t stream);

}  // namespace rc::cuda
