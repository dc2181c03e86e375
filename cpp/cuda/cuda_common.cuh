// cuda_common.cuh: error checks, device memory and launch helpers shared by the CUDA backend.
// Plain C++ (no device code), so both the .cu kernels and bindings_cuda.cpp (host compiler)
// include it. Every CUDA runtime call goes through RC_CUDA_CHECK and every kernel launch is
// followed by RC_CUDA_LAUNCH_CHECK: failures become std::runtime_error (Python RuntimeError)
// carrying the CUDA error name and string plus the failing call and source location.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace rc::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);

// Throws on any launch-configuration error; with RESNET_CPP_CUDA_SYNC=1 in the environment it
// also synchronizes the stream so an asynchronous fault is reported at the kernel that caused
// it (debugging aid; off by default because it serializes host and device).
void check_launch(cudaStream_t stream, const char* kernel, const char* file, int line);

#define RC_CUDA_CHECK(call)                                                        \
    do {                                                                           \
        cudaError_t rc_err_ = (call);                                              \
        if (rc_err_ != cudaSuccess)                                                \
            ::rc::cuda::throw_cuda_error(rc_err_, #call, __FILE__, __LINE__);      \
    } while (0)

#define RC_CUDA_LAUNCH_CHECK(stream, name) ::rc::cuda::check_launch((stream), (name), __FILE__, __LINE__)

// Throws std::invalid_argument (Python ValueError) when cond is false.
#define RC_CUDA_REQUIRE(cond, msg)                                             \
    do {                                                                       \
        if (!(cond)) throw std::invalid_argument(std::string(msg));            \
    } while (0)

// The stream every op of this module is launched on (process-wide; 0 = legacy default
// stream). Set from Python with _cuda.set_stream() for graph capture or overlap.
cudaStream_t current_stream();
void set_current_stream(cudaStream_t s);

// GEMM precision for conv and linear: false (default) = FP32, true = TF32 tensor cores on
// sm_80+ devices (FP32 elsewhere). Process-wide.
bool tf32_enabled();
void set_tf32(bool on);

// Owning device allocation (cudaMalloc/cudaFree). Move-only. Destruction never throws: a
// failing cudaFree (e.g. after a sticky device fault) is ignored because the context is lost
// anyway.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; o.bytes_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void* data() const { return p_; }
    size_t bytes() const { return bytes_; }

  private:
    void* p_ = nullptr;
    size_t bytes_ = 0;
};

// Stream-ordered per-call scratch (cudaMallocAsync/cudaFreeAsync on the given stream), so
// it is safe inside CUDA graph capture and never shared between calls or threads.
class Scratch {
  public:
    Scratch(size_t bytes, cudaStream_t stream);
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <typename T>
    T* as() const { return static_cast<T*>(p_); }

  private:
    void* p_ = nullptr;
    cudaStream_t stream_;
};

// cudaSuccess when this build's kernels can run on the current device.
cudaError_t kernel_image_status();

// Grid size for a grid-stride loop over n items: enough blocks to fill the GPU, capped so
// tiny launches stay tiny. n >= 1.
inline unsigned grid_for(int64_t n, int block) {
    int64_t g = (n + block - 1) / block;
    const int64_t cap = 65535;
    return (unsigned)(g < 1 ? 1 : (g > cap ? cap : g));
}

}  // namespace rc::cuda
