// common.cu: error reporting, device buffers, the module-wide stream and small shared
// kernels of the CUDA backend (see cuda_common.cuh).
#include <atomic>
#include <cstdlib>
#include <deque>
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
std::atomic<cudaStream_t> g_stream{nullptr};
std::atomic<bool> g_tf32{false};
}  // namespace

cudaStream_t current_stream() { return g_stream.load(); }
void set_current_stream(cudaStream_t s) { g_stream.store(s); }
bool tf32_enabled() { return g_tf32.load(); }
void set_tf32(bool on) { g_tf32.store(on); }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) RC_CUDA_CHECK(cudaMalloc(&p_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
    if (p_ && cudaFree(p_) != cudaSuccess) cudaGetLastError();
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
        if (p_ && cudaFree(p_) != cudaSuccess) cudaGetLastError();
        p_ = o.p_;
        bytes_ = o.bytes_;
        o.p_ = nullptr;
        o.bytes_ = 0;
    }
    return *this;
}

Scratch::Scratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    RC_CUDA_CHECK(cudaMallocAsync(&p_, bytes ? bytes : 16, stream));
}

Scratch::~Scratch() {
    if (p_ && cudaFreeAsync(p_, stream_) != cudaSuccess) cudaGetLastError();
}

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

void doubles_to_floats(const double* in, float* out, int n, double scale, cudaStream_t stream) {
    doubles_to_floats_kernel<<<grid_for(n, 128), 128, 0, stream>>>(in, out, n, scale);
    RC_CUDA_LAUNCH_CHECK(stream, "doubles_to_floats");
}

}  // namespace rc::cuda
