// cuda_common.cuh: error checks, device memory and launch helpers shared by the CUDA backend.
// Plain C++ (no device code), so both the .cu kernels and bindings_cuda.cpp (host compiler)
// include it. Every CUDA runtime call goes through RC_CUDA_CHECK and every kernel launch is
// followed by RC_CUDA_LAUNCH_CHECK: failures become std::runtime_error (Python RuntimeError)
// carrying the CUDA error name and string plus the failing call and source location.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

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

// Waits for `stream` (cudaStreamSynchronize) and counts the wait: every host wait of the
// module goes through here, so tests can check how often a training step waits.
void host_sync(cudaStream_t stream);
uint64_t host_sync_count();

// ---- The caching allocator behind every DeviceBuffer and Scratch.
// Freed blocks stay on per-size free lists and are handed out again; only a miss calls
// cudaMalloc (counted), so a steady-state training step allocates no device memory. A block
// may be reused while kernels that used it are still queued: reuse is ordered after them
// because every op runs on the module's one current stream (set_stream makes the new stream
// wait for the old one). While a CUDA graph capture is active (capture_begin), freed blocks
// go to the capture instead and return to the cache only when the graph is destroyed
// (capture_release), so a replayed graph never writes memory handed out again.
struct Block {
    void* ptr;
    size_t bytes;
};
// cache_alloc throws OutOfMemory when cudaMalloc fails even after the cached blocks were
// given back and it was retried: a std::bad_alloc, so Python sees a MemoryError (the bindings
// name the array being allocated, see device_array.cpp).
struct OutOfMemory : std::bad_alloc {
    explicit OutOfMemory(std::string m) : msg(std::move(m)) {}
    const char* what() const noexcept override { return msg.c_str(); }
    std::string msg;
};
void* cache_alloc(size_t bytes);
void cache_free(void* p, size_t bytes);
struct CacheStats {
    uint64_t device_mallocs;  // cudaMalloc calls so far (cache misses)
    uint64_t requests;        // allocations asked for
    size_t in_use_bytes;      // held by live buffers (rounded sizes)
    size_t cached_bytes;      // free in the cache
};
CacheStats cache_stats();
void cache_empty();  // cudaFree every free cached block

// The blocks a capture took over; capture_begin/end bracket one capture (one at a time).
void capture_begin(std::vector<Block>* sink);
void capture_end();
void capture_release(std::vector<Block>& blocks);  // back to the cache

// n elements of 4 or 8 bytes set to `bits` (the value's bit pattern), on `stream`.
void fill(void* p, int64_t n, int elem_bytes, uint64_t bits, cudaStream_t stream);

// Owning device allocation from the cache. Move-only. Destruction never throws.
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

// Per-call scratch from the cache (see above: safe inside CUDA graph capture).
class Scratch {
  public:
    explicit Scratch(size_t bytes);
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <typename T>
    T* as() const { return static_cast<T*>(p_); }

  private:
    void* p_ = nullptr;
    size_t bytes_;
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
