// common.h: shapes, error checks and small helpers shared by every kernel file.
// Kernels are free functions over raw float pointers plus a shape struct; they never see
// pybind11 or NumPy. Activations inside the kernels are NHWC (channels-last): see README.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#ifdef RESNET_CPP_HAVE_OPENMP
#include <omp.h>
#endif

namespace rc {

// Throws std::invalid_argument (a Python ValueError) when cond is false.
#define RC_CHECK(cond, msg)                                   \
    do {                                                      \
        if (!(cond)) throw std::invalid_argument(std::string(msg)); \
    } while (0)

// Convolution geometry. x is (N,H,W,C), w is (R,S,C,K), y is (N,P,Q,K).
struct ConvShape {
    int64_t N, H, W, C;  // input
    int64_t K, R, S;     // output channels, kernel height, kernel width
    int64_t stride, pad; // same in both spatial dims
    int64_t P, Q;        // output height, width
};

// Inline code below is also compiled into cpp/simd/ files built with ISA flags. Each flag
// set gets its own inline namespace (distinct symbols), so the linker can never hand baseline
// code a copy compiled with AVX-512 instructions. Plain structs stay outside: they cross
// translation units in kernel signatures.
#if defined(__AVX512BF16__)
#define RC_ISA_NAMESPACE isa_avx512_bf16
#elif defined(__AVX512F__)
#define RC_ISA_NAMESPACE isa_avx512
#elif defined(__AVX2__)
#define RC_ISA_NAMESPACE isa_avx2
#else
#define RC_ISA_NAMESPACE isa_baseline
#endif
inline namespace RC_ISA_NAMESPACE {

inline ConvShape make_conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                                 int64_t R, int64_t S, int64_t stride, int64_t pad) {
    ConvShape s{N, H, W, C, K, R, S, stride, pad, 0, 0};
    s.P = (H + 2 * pad - R) / stride + 1;
    s.Q = (W + 2 * pad - S) / stride + 1;
    return s;
}

// OpenMP helpers that degrade to one thread when OpenMP is not compiled in.
inline int max_threads() {
#ifdef RESNET_CPP_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
inline int thread_id() {
#ifdef RESNET_CPP_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// out[k] = sum over the private copies u < used of priv[u * stride + k], k < n: the one
// reduction of per-thread buffers, added in thread order (so the result depends only on the
// thread count, never on timing). out may not overlap priv.
inline void reduce_private(const float* priv, int64_t stride, int used, int64_t n, float* out) {
    for (int64_t k = 0; k < n; ++k) out[k] = priv[k];
    for (int u = 1; u < used; ++u)
        for (int64_t k = 0; k < n; ++k) out[k] += priv[u * stride + k];
}

// Owning 64-byte-aligned float buffer for per-call scratch (never shared between calls,
// so kernels stay safe to run from several Python threads at once).
class AlignedBuffer {
  public:
    explicit AlignedBuffer(size_t n) : n_(n) {
        size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
        p_ = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
        if (!p_) throw std::bad_alloc();
    }
    ~AlignedBuffer() { std::free(p_); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    float* data() { return p_; }
    size_t size() const { return n_; }

  private:
    float* p_;
    size_t n_;
};

}  // inline namespace RC_ISA_NAMESPACE
}  // namespace rc
