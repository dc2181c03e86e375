// gemm.cuh: one tiled FP32 SIMT GEMM template, C (M,N) = A (M,K) * B (K,N), where A and B
// are not matrices in memory but loader functors. Convolution (forward, backward-data,
// backward-weight) is implicit GEMM: the loaders gather the im2col element on the fly, so no
// im2col buffer is ever materialized. Linear layers use plain row-major loaders.
//
// A loader (gathers; its index math is the cost, so it is split by what changes when):
//   struct Row, struct Col;
//   __device__ Row   row(int m) const;                    // once per thread, m < M
//   __device__ Col   col(int k) const;                    // once per 16-wide K step, k < K
//   __device__ float at(const Row&, const Col&) const;    // per element, 0 for padding
// Each thread loads 4 A rows (fixed for the whole K loop) in one k column per step, so the
// row decomposition (n,p,q) is paid once and the column one (r,s,c) once per step.
// B loader: __device__ float operator()(int k, int n) const.
// Store:    __device__ void  operator()(int split, int m, int n, float v) const.
// Only called for m < M, n < N, k < K. All indices are int: the bindings reject tensors with
// more than INT32_MAX elements.
//
// Precision: FP32 FMA by default; set_tf32(true) switches to the TF32 tensor-core kernel
// below on sm_80+ (about 3 decimal digits per product; the tests loosen tolerances for it).
//
// Tiling: a 256-thread block computes a 64x64 tile of C, each thread a 4x4 sub-tile at rows
// ty + 16*i and columns tx + 16*j (strided, so shared-memory reads are conflict-free: the A
// read is a broadcast per ty, the B read is 16 consecutive words). K advances in steps of 16.
// Split-K (gridDim.z > 1) gives each z-slice a contiguous K range; the partial tiles go to a
// workspace and a second kernel sums them in fixed order, so results are deterministic.
#pragma once
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>

#include "cuda_common.cuh"

namespace rc::cuda {

constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 16, kGemmThreads = 256;
// Launch bounds (256 threads, >= 2 blocks/SM, i.e. <= 128 registers): with the thread count
// alone, ptxas for sm_90 capped the SIMT kernel at 48 registers and spilled.
#define RC_GEMM_LAUNCH_BOUNDS __launch_bounds__(kGemmThreads, 2)

// The 4 A-tile rows of thread tid: tile rows tid/16 + 16*i (A element e = tid + 256*i of the
// 64x16 tile sits at row e/16, column e%16 = tid%16).
template <class ALoad>
struct ARows {
    typename ALoad::Row row[4];
    bool valid[4];
    __device__ ARows(const ALoad& a, int m0, int M, int tid) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int m = m0 + tid / kGemmBK + 16 * i;
            valid[i] = m < M;
            if (valid[i]) row[i] = a.row(m);
        }
    }
};

// Fills As[k][m] (64x16 A tile, stored k-major) and Bs[k][n] (16x64 B tile) for K step k0.
template <int LDA, class ALoad, class BLoad>
__device__ __forceinline__ void load_tiles(float (*As)[LDA], float (*Bs)[kGemmBN], const ALoad& a,
                                           const ARows<ALoad>& rows, const BLoad& b, int k0,
                                           int k_end, int n0, int N, int tid) {
    const int c = tid % kGemmBK, k = k0 + c;
    if (k < k_end) {
        const typename ALoad::Col col = a.col(k);
#pragma unroll
        for (int i = 0; i < 4; ++i)
            As[c][tid / kGemmBK + 16 * i] = rows.valid[i] ? a.at(rows.row[i], col) : 0.0f;
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) As[c][tid / kGemmBK + 16 * i] = 0.0f;
    }
    // B element e = tid + 256*i at row e/64, column e%64 (n fastest: coalesced for row-major
    // B such as RSCK weights or NHWC dy).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int e = tid + kGemmThreads * i;
        const int r = e / kGemmBN, cc = e % kGemmBN;
        const int kk = k0 + r, n = n0 + cc;
        Bs[r][cc] = (kk < k_end && n < N) ? b(kk, n) : 0.0f;
    }
}

template <class ALoad, class BLoad, class Store>
__global__ void RC_GEMM_LAUNCH_BOUNDS
gemm_kernel(int M, int N, int K, int k_per_split, ALoad a, BLoad b, Store st) {
    // +1 column: the A-tile stores (16 k-columns per 16 threads) hit distinct banks.
    __shared__ float As[kGemmBK][kGemmBM + 1];
    __shared__ float Bs[kGemmBK][kGemmBN];
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.x * kGemmBM, n0 = blockIdx.y * kGemmBN;
    const int k_begin = blockIdx.z * k_per_split;
    const int k_end = min(K, k_begin + k_per_split);
    const ARows<ALoad> rows(a, m0, M, tid);

    float acc[4][4] = {};
    for (int k0 = k_begin; k0 < k_end; k0 += kGemmBK) {
        load_tiles<kGemmBM + 1>(As, Bs, a, rows, b, k0, k_end, n0, N, tid);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kGemmBK; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) av[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + 16 * j;
            if (n < N) st(blockIdx.z, m, n, acc[i][j]);
        }
    }
}

// TF32 tensor-core variant of gemm_kernel (sm_80+): same tiles, loaders and stores, but the
// 64x64x16 block product runs on wmma 16x16x8 TF32 fragments (inputs rounded to TF32's
// 10-bit mantissa, FP32 accumulation). 8 warps: warp w owns rows 16*(w/2) .. +15 and
// columns 32*(w%2) .. +31 (two fragments). The accumulators go through shared memory so
// the store functor sees plain (m, n, v) triples. Leading dimensions are multiples of 4
// floats and fragment pointers 32-byte aligned, as wmma requires.
constexpr int kTf32LdA = kGemmBM + 4, kTf32LdC = kGemmBN + 4;

template <class ALoad, class BLoad, class Store>
__global__ void RC_GEMM_LAUNCH_BOUNDS
gemm_kernel_tf32(int M, int N, int K, int k_per_split, ALoad a, BLoad b, Store st) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    namespace wmma = nvcuda::wmma;
    __shared__ __align__(32) float As[kGemmBK][kTf32LdA];  // As[k][m]: A tile, column-major
    __shared__ __align__(32) float Bs[kGemmBK][kGemmBN];   // Bs[k][n]: B tile, row-major
    __shared__ __align__(32) float Cs[kGemmBM][kTf32LdC];
    const int tid = threadIdx.x, warp = tid / 32;
    const int m0 = blockIdx.x * kGemmBM, n0 = blockIdx.y * kGemmBN;
    const int k_begin = blockIdx.z * k_per_split;
    const int k_end = min(K, k_begin + k_per_split);
    const int wm = 16 * (warp / 2), wn = 32 * (warp % 2);
    const ARows<ALoad> rows(a, m0, M, tid);

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2];
    wmma::fill_fragment(acc[0], 0.0f);
    wmma::fill_fragment(acc[1], 0.0f);
    for (int k0 = k_begin; k0 < k_end; k0 += kGemmBK) {
        load_tiles<kTf32LdA>(As, Bs, a, rows, b, k0, k_end, n0, N, tid);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kGemmBK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa;
            wmma::load_matrix_sync(fa, &As[kk][wm], kTf32LdA);
#pragma unroll
            for (int t = 0; t < fa.num_elements; ++t) fa.x[t] = wmma::__float_to_tf32(fa.x[t]);
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
                wmma::load_matrix_sync(fb, &Bs[kk][wn + 16 * j], kGemmBN);
#pragma unroll
                for (int t = 0; t < fb.num_elements; ++t) fb.x[t] = wmma::__float_to_tf32(fb.x[t]);
                wmma::mma_sync(acc[j], fa, fb, acc[j]);
            }
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(&Cs[wm][wn], acc[0], kTf32LdC, wmma::mem_row_major);
    wmma::store_matrix_sync(&Cs[wm][wn + 16], acc[1], kTf32LdC, wmma::mem_row_major);
    __syncthreads();
    // Thread t stores column t % 64 of rows t / 64, +4, ...: consecutive threads, consecutive n.
    for (int e = tid; e < kGemmBM * kGemmBN; e += kGemmThreads) {
        const int r = e / kGemmBN, c = e % kGemmBN;
        const int m = m0 + r, n = n0 + c;
        if (m < M && n < N) st(blockIdx.z, m, n, Cs[r][c]);
    }
#else
    __trap();  // never launched: the host picks this kernel only on sm_80+ devices
#endif
}

// Split-K partials: ws is (splits, M, N).
struct WorkspaceStore {
    float* ws;
    int M, N;
    __device__ void operator()(int z, int m, int n, float v) const {
        ws[((int64_t)z * M + m) * N + n] = v;
    }
};

// Sums the split partials in split order and hands each total to the final store.
template <class Store>
__global__ void gemm_splitk_reduce(const float* ws, int M, int N, int splits, Store st) {
    const int64_t MN = (int64_t)M * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < MN;
         i += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < splits; ++z) s += ws[z * MN + i];
        st(0, (int)(i / N), (int)(i % N), s);
    }
}

// Properties of the current device, queried once per device.
struct DeviceCaps {
    int sms;    // multiprocessors
    int major;  // compute capability major
};
const DeviceCaps& device_caps();

// Launches the TF32 kernel when TF32 is enabled (set_tf32) and the device is sm_80+.
template <class ALoad, class BLoad, class Store>
void launch_gemm_tile(dim3 grid, int M, int N, int K, int k_per_split, ALoad a, BLoad b, Store st,
                      cudaStream_t stream, const char* name) {
    if (tf32_enabled() && device_caps().major >= 8)
        gemm_kernel_tf32<<<grid, kGemmThreads, 0, stream>>>(M, N, K, k_per_split, a, b, st);
    else
        gemm_kernel<<<grid, kGemmThreads, 0, stream>>>(M, N, K, k_per_split, a, b, st);
    RC_CUDA_LAUNCH_CHECK(stream, name);
}

// Launches C = A * B through st. Splits K only when the output has too few tiles to fill the
// GPU and K is long (backward-weight: M = R*S*C, N = K_out, K = N*P*Q).
template <class ALoad, class BLoad, class Store>
void gemm(int M, int N, int K, ALoad a, BLoad b, Store st, cudaStream_t stream, const char* name) {
    const int tiles_m = (M + kGemmBM - 1) / kGemmBM, tiles_n = (N + kGemmBN - 1) / kGemmBN;
    // M tiles on grid.x (up to 2^31-1: M = N*H*W can be large), N tiles on grid.y (<= 65535).
    if (tiles_n > 65535) throw std::invalid_argument(std::string(name) + ": N too large for the grid");
    const int64_t tiles = (int64_t)tiles_m * tiles_n;
    const int64_t want = 2 * (int64_t)device_caps().sms;
    int splits = 1;
    if (tiles < want && K >= 1024) {
        const int64_t by_fill = (want + tiles - 1) / tiles;
        const int64_t by_len = K / 512;  // keep >= 512 K-steps per split
        splits = (int)std::max<int64_t>(1, std::min<int64_t>({by_fill, by_len, 64}));
    }
    // Round the per-split K range up to whole 16-wide steps so the ranges tile K exactly.
    int k_per_split = (K + splits - 1) / splits;
    k_per_split = (k_per_split + kGemmBK - 1) / kGemmBK * kGemmBK;
    splits = std::max(1, (K + k_per_split - 1) / k_per_split);
    const dim3 grid(tiles_m, tiles_n, splits);
    if (splits == 1) {
        launch_gemm_tile(grid, M, N, K, k_per_split, a, b, st, stream, name);
        return;
    }
    Scratch ws((size_t)splits * M * N * sizeof(float));
    launch_gemm_tile(grid, M, N, K, k_per_split, a, b, WorkspaceStore{ws.as<float>(), M, N}, stream, name);
    gemm_splitk_reduce<<<grid_for((int64_t)M * N, 256), 256, 0, stream>>>(ws.as<float>(), M, N, splits, st);
    RC_CUDA_LAUNCH_CHECK(stream, name);
}

}  // namespace rc::cuda
