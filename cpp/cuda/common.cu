// common.cu: error reporting, host waits, the caching allocator, the module-wide stream and
// small shared kernels of the CUDA backend (see cuda_common.cuh).
#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>

#include "cuda_common.cuh"
#include "gemm.cuh"
#include "reduce.cuh"

namespace rc::cuda {

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
    // Clear the (non-sticky) error so later, unrelated calls do not report it again.
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(err) + ": " +
                             cudaGetErrorString(err) + " (in " + what + " at " + file + ":" +
                             std::to_string(line) + ")");
}

namespace {
bool sync_after_launch() {
    static const bool on = [] {
        const char* v = std::getenv("RESNET_CPP_CUDA_SYNC");
        return v && v[0] == '1';
    }();
    return on;
}
}  // namespace

void check_launch(cudaStream_t stream, const char* kernel, const char* file, int line) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw_cuda_error(err, kernel, file, line);
    if (sync_after_launch()) {
        cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
        RC_CUDA_CHECK(cudaStreamIsCapturing(stream, &cap));
        if (cap == cudaStreamCaptureStatusNone) {
            err = cudaStreamSynchronize(stream);
            if (err != cudaSuccess) throw_cuda_error(err, kernel, file, line);
        }
    }
}

namespace {
std::atomic<uint64_t> g_syncs{0};
}  // namespace

void host_sync(cudaStream_t stream) {
    ++g_syncs;
    RC_CUDA_CHECK(cudaStreamSynchronize(stream));
}
uint64_t host_sync_count() { return g_syncs.load(); }

// ------------------------------------------------------------------ caching allocator

namespace {

struct Cache {
    std::mutex mu;
    std::multimap<size_t, void*> free;  // rounded size -> block
    CacheStats stats{0, 0, 0, 0};
    std::vector<Block>* sink = nullptr;  // the active capture's blocks
};
Cache& cache() {
    static Cache* c = new Cache;  // never destroyed: buffers may be freed at interpreter exit
    return *c;
}

// Sizes are rounded so that near-equal requests share blocks: 512 B steps up to 1 MiB, then
// 1 MiB steps. A cached block serves a request of its exact rounded size.
size_t rounded(size_t bytes) {
    const size_t step = bytes <= (size_t(1) << 20) ? 512 : (size_t(1) << 20);
    return (bytes + step - 1) / step * step;
}

void free_cached_locked(Cache& c) {
    for (auto& [bytes, p] : c.free)
        if (cudaFree(p) != cudaSuccess) cudaGetLastError();
    c.stats.cached_bytes = 0;
    c.free.clear();
}

}  // namespace

void* cache_alloc(size_t bytes) {
    Cache& c = cache();
    const size_t n = rounded(bytes ? bytes : 1);
    std::lock_guard<std::mutex> lock(c.mu);
    ++c.stats.requests;
    auto it = c.free.find(n);
    void* p = nullptr;
    if (it != c.free.end()) {
        p = it->second;
        c.free.erase(it);
        c.stats.cached_bytes -= n;
    } else {
        cudaError_t e = cudaMalloc(&p, n);
        if (e == cudaErrorMemoryAllocation && !c.free.empty()) {
            cudaGetLastError();  // out of memory: give the cached blocks back and retry
            free_cached_locked(c);
            e = cudaMalloc(&p, n);
        }
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            throw OutOfMemory("cudaMalloc: out of device memory allocating " +
                              std::to_string(n) + " bytes");
        }
        if (e != cudaSuccess) throw_cuda_error(e, "cudaMalloc", __FILE__, __LINE__);
        ++c.stats.device_mallocs;
    }
    c.stats.in_use_bytes += n;
    return p;
}

void cache_free(void* p, size_t bytes) {
    if (!p) return;
    Cache& c = cache();
    const size_t n = rounded(bytes ? bytes : 1);
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.in_use_bytes -= n;
    if (c.sink) {
        c.sink->push_back({p, n});
        return;
    }
    c.free.emplace(n, p);
    c.stats.cached_bytes += n;
}

CacheStats cache_stats() {
    std::lock_guard<std::mutex> lock(cache().mu);
    return cache().stats;
}

void cache_empty() {
    std::lock_guard<std::mutex> lock(cache().mu);
    free_cached_locked(cache());
}

void capture_begin(std::vector<Block>* sink) {
    std::lock_guard<std::mutex> lock(cache().mu);
    cache().sink = sink;
}

void capture_end() {
    std::lock_guard<std::mutex> lock(cache().mu);
    cache().sink = nullptr;
}

void capture_release(std::vector<Block>& blocks) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    for (const Block& b : blocks) {
        c.free.emplace(b.bytes, b.ptr);
        c.stats.cached_bytes += b.bytes;
    }
    blocks.clear();
}

namespace {
std::atomic<cudaStream_t> g_stream{nullptr};
std::atomic<bool> g_tf32{false};
}  // namespace

cudaStream_t current_stream() { return g_stream.load(); }
void set_current_stream(cudaStream_t s) { g_stream.store(s); }
bool tf32_enabled() { return g_tf32.load(); }
void set_tf32(bool on) { g_tf32.store(on); }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) p_ = cache_alloc(bytes);
}

DeviceBuffer::~DeviceBuffer() { cache_free(p_, bytes_); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
        cache_free(p_, bytes_);
        p_ = o.p_;
        bytes_ = o.bytes_;
        o.p_ = nullptr;
        o.bytes_ = 0;
    }
    return *this;
}

Scratch::Scratch(size_t bytes) : bytes_(bytes ? bytes : 16) { p_ = cache_alloc(bytes_); }

Scratch::~Scratch() { cache_free(p_, bytes_); }

const DeviceCaps& device_caps() {
    // One entry per device, filled on first use; entries never move once filled (deque).
    static std::mutex mu;
    static std::deque<DeviceCaps> caps;
    int dev = 0;
    RC_CUDA_CHECK(cudaGetDevice(&dev));
    std::lock_guard<std::mutex> lock(mu);
    while ((int)caps.size() <= dev) caps.push_back({0, 0});
    DeviceCaps& c = caps[dev];
    if (c.sms == 0) {
        RC_CUDA_CHECK(cudaDeviceGetAttribute(&c.major, cudaDevAttrComputeCapabilityMajor, dev));
        RC_CUDA_CHECK(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, dev));
    }
    return c;
}

namespace {
__global__ void doubles_to_floats_kernel(const double* in, float* out, int n, double scale) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = (float)(scale * in[i]);
}
}  // namespace

cudaError_t kernel_image_status() {
    // Fails with cudaErrorNoKernelImageForDevice (or similar) when none of the compiled
    // architectures runs on the current device.
    cudaFuncAttributes attr;
    return cudaFuncGetAttributes(&attr, doubles_to_floats_kernel);
}

namespace {
template <typename T>
__global__ void fill_kernel(T* p, int64_t n, T v) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        p[i] = v;
}
}  // namespace

void fill(void* p, int64_t n, int elem_bytes, uint64_t bits, cudaStream_t stream) {
    if (n == 0) return;
    if (elem_bytes == 8)
        fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<uint64_t*>(p), n, bits);
    else
        fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<uint32_t*>(p), n, (uint32_t)bits);
    RC_CUDA_LAUNCH_CHECK(stream, "fill");
}

void doubles_to_floats(const double* in, float* out, int n, double scale, cudaStream_t stream) {
    doubles_to_floats_kernel<<<grid_for(n, 128), 128, 0, stream>>>(in, out, n, scale);
    RC_CUDA_LAUNCH_CHECK(stream, "doubles_to_floats");
}

}  // namespace rc::cuda
