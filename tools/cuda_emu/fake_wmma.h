// fake_wmma.h: the nvcuda::wmma subset the TF32 GEMM uses, for the CPU emulation. Every lane
// holds the whole fragment (the warp-collective calls are repeated by each lane with the
// same arguments), with the documented layouts: matrix_a is M x K, matrix_b K x N, the
// accumulator M x N; col_major means element (i, j) at p[i + j * ldm]. Pointer alignment
// (32 bytes) and ldm (a multiple of 4 floats) are checked as the hardware requires.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment;

template <int M, int N, int K, class L>
struct fragment<matrix_a, M, N, K, precision::tf32, L> {
    static constexpr int rows = M, cols = K, num_elements = M * K;
    float x[M * K];
};
template <int M, int N, int K, class L>
struct fragment<matrix_b, M, N, K, precision::tf32, L> {
    static constexpr int rows = K, cols = N, num_elements = K * N;
    float x[K * N];
};
template <int M, int N, int K>
struct fragment<accumulator, M, N, K, float, void> {
    static constexpr int rows = M, cols = N, num_elements = M * N;
    float x[M * N];
};

inline void check(const void* p, unsigned ldm) {
    if (reinterpret_cast<uintptr_t>(p) % 32 || ldm % 4) {
        std::fprintf(stderr, "wmma: pointer %p not 32-byte aligned or ldm %u not a multiple of 4\n", p, ldm);
        std::abort();
    }
}

template <class F>
void fill_fragment(F& f, float v) {
    for (float& e : f.x) e = v;
}

template <class Use, int M, int N, int K, class T>
void load_matrix_sync(fragment<Use, M, N, K, T, row_major>& f, const float* p, unsigned ldm) {
    check(p, ldm);
    using Fr = fragment<Use, M, N, K, T, row_major>;
    for (int i = 0; i < Fr::rows; ++i)
        for (int j = 0; j < Fr::cols; ++j) f.x[i * Fr::cols + j] = p[i * ldm + j];
}

template <class Use, int M, int N, int K, class T>
void load_matrix_sync(fragment<Use, M, N, K, T, col_major>& f, const float* p, unsigned ldm) {
    check(p, ldm);
    using Fr = fragment<Use, M, N, K, T, col_major>;
    for (int i = 0; i < Fr::rows; ++i)
        for (int j = 0; j < Fr::cols; ++j) f.x[i * Fr::cols + j] = p[i + j * ldm];
}

template <int M, int N, int K, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float, void>& d,
              const fragment<matrix_a, M, N, K, precision::tf32, LA>& a,
              const fragment<matrix_b, M, N, K, precision::tf32, LB>& b,
              const fragment<accumulator, M, N, K, float, void>& c) {
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; ++k) s += a.x[i * K + k] * b.x[k * N + j];
            out[i * N + j] = s;
        }
    std::memcpy(d.x, out, sizeof(out));
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float, void>& f, unsigned ldm,
                       layout_t layout) {
    check(p, ldm);
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j)
            p[layout == mem_row_major ? i * ldm + j : i + j * ldm] = f.x[i * N + j];
}

// Round to TF32 (10 explicit mantissa bits), nearest-even on the dropped 13 bits.
inline float __float_to_tf32(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    std::memcpy(&v, &u, 4);
    return v;
}

}  // namespace nvcuda::wmma
