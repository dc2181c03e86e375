// module.cpp: the _cuda extension module: whether CUDA is usable and why not, the device,
// streams, CUDA graphs and the allocator's statistics; each op family registers its functions
// from its own file (bind_<family>), as cpp/bindings/module.cpp does for _core. Arrays are
// DeviceArrays, never NumPy arrays: host <-> device copies are explicit (device_array.cpp).
// The module imports without a driver; calls then raise with the reason.
#include <pybind11/stl.h>

#include <sstream>

#include "device_array.h"

#ifndef RESNET_CPP_CUDA_ARCHS
#define RESNET_CPP_CUDA_ARCHS "unknown"
#endif

using namespace rc::cuda_bind;

namespace {

std::string device_summary() {
    const Availability& a = availability();
    if (!a.ok) return "unavailable: " + a.why;
    cudaDeviceProp p;
    RC_CUDA_CHECK(cudaGetDeviceProperties(&p, a.device));
    std::ostringstream s;
    s << p.name << " (sm_" << p.major << p.minor << ", " << p.multiProcessorCount << " SMs, "
      << (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0) << " GiB)";
    return s.str();
}

py::dict device_info() {
    require_device();
    const Availability& a = availability();
    cudaDeviceProp p;
    RC_CUDA_CHECK(cudaGetDeviceProperties(&p, a.device));
    int driver = 0, runtime = 0;
    RC_CUDA_CHECK(cudaDriverGetVersion(&driver));
    RC_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    py::dict d;
    d["device"] = a.device;
    d["name"] = std::string(p.name);
    d["compute_capability"] = py::make_tuple(p.major, p.minor);
    d["multiprocessors"] = p.multiProcessorCount;
    d["total_memory"] = (uint64_t)p.totalGlobalMem;
    d["driver_version"] = driver;
    d["runtime_version"] = runtime;
    return d;
}

int64_t create_stream() {
    require_device();
    cudaStream_t s;
    RC_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return (int64_t) reinterpret_cast<uintptr_t>(s);
}

void destroy_stream(int64_t handle) {
    if (handle == 0 || handle == 1 || handle == 2)
        throw py::value_error("handle: the default streams cannot be destroyed");
    cudaStream_t s = stream_from_int(handle);
    if (s == stream()) rc::cuda::set_current_stream(nullptr);
    RC_CUDA_CHECK(cudaStreamDestroy(s));
}

// CUDA graph of the ops issued between begin() and end() on the module's current stream,
// which must be a created (non-default) stream. Replays re-run the same kernels on the same
// device addresses, so the graph keeps alive every DeviceArray an op touched while capturing
// and every block freed during the capture (the allocator hands neither out again until the
// graph is destroyed). check_labels must be False in softmax_cross_entropy (it waits for the
// host), and numbers passed to ops are frozen at their captured values: pass lr or Adam's
// step as one-element device arrays to change them between replays.
class CudaGraph {
  public:
    CudaGraph() = default;
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;
    ~CudaGraph() { reset(); }

    void begin() {
        require_device();
        if (capturing_) throw py::value_error("CudaGraph.begin: already capturing");
        cudaStream_t s = stream();
        if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread)
            throw py::value_error("CudaGraph.begin: capture needs a created stream; call "
                                  "set_stream(create_stream()) first");
        reset();
        RC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
        stream_ = s;
        capturing_ = true;
        set_capture_keep(&arrays_);
        rc::cuda::capture_begin(&blocks_);
    }

    void end() {
        if (!capturing_) throw py::value_error("CudaGraph.end: begin() was not called");
        stop_capture();
        cudaGraph_t g = nullptr;
        RC_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
        graph_ = g;
        RC_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
    }

    void replay() {
        if (!exec_) throw py::value_error("CudaGraph.replay: nothing captured (call begin/end)");
        {
            py::gil_scoped_release nogil;
            RC_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
        }
        rc::cuda::check_launch(stream_, "CudaGraph.replay", __FILE__, __LINE__);
    }

    size_t num_nodes() const {
        if (!graph_) return 0;
        size_t n = 0;
        RC_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &n));
        return n;
    }

  private:
    void stop_capture() {
        capturing_ = false;
        set_capture_keep(nullptr);
        rc::cuda::capture_end();
    }

    // Never throws: also runs from the destructor.
    void reset() {
        if (capturing_) {
            stop_capture();
            cudaGraph_t g = nullptr;
            if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
            cudaGetLastError();
        }
        if (exec_) cudaGraphExecDestroy(exec_);
        if (graph_) cudaGraphDestroy(graph_);
        exec_ = nullptr;
        graph_ = nullptr;
        arrays_.clear();
        rc::cuda::capture_release(blocks_);
    }

    cudaStream_t stream_ = nullptr;
    cudaGraph_t graph_ = nullptr;
    cudaGraphExec_t exec_ = nullptr;
    bool capturing_ = false;
    std::vector<std::shared_ptr<void>> arrays_;
    std::vector<rc::cuda::Block> blocks_;
};

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "resnet_cpp CUDA backend: device arrays and NHWC kernels (forward and backward)";
    m.attr("cuda_architectures") = RESNET_CPP_CUDA_ARCHS;
    m.attr("runtime_version_built") = CUDART_VERSION;

    // ---- availability and device
    m.def("available", [] { return availability().ok; },
          "True when a CUDA driver and device are present and this build's kernels run on it.");
    m.def("why_unavailable", [] { return availability().why; },
          "Empty string when available; otherwise why not (no driver, no device, architecture).");
    m.def("device_summary", &device_summary,
          "'<name> (sm_XY, <n> SMs, <mem> GiB)', or 'unavailable: <reason>' (never raises).");
    m.def("device_info", &device_info, "Device name, compute capability, memory, versions.");
    m.def("mem_info", [] {
        require_device();
        size_t free_b = 0, total_b = 0;
        RC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        return py::make_tuple((uint64_t)free_b, (uint64_t)total_b);
    }, "(free bytes, total bytes) of the current device (cudaMemGetInfo).");
    m.def("synchronize", [] {
        require_device();
        py::gil_scoped_release nogil;
        rc::cuda::host_sync(stream());
    }, "Wait for all work queued on the module's stream; raises any asynchronous kernel error.");
    m.def("sync_count", &rc::cuda::host_sync_count,
          "How many times the module has waited for the device (synchronize, blocking copies,\n"
          "checked labels) since import.");
    m.def("allocator_stats", [] {
        const rc::cuda::CacheStats s = rc::cuda::cache_stats();
        py::dict d;
        d["device_mallocs"] = s.device_mallocs;
        d["requests"] = s.requests;
        d["in_use_bytes"] = (uint64_t)s.in_use_bytes;
        d["cached_bytes"] = (uint64_t)s.cached_bytes;
        return d;
    }, "The caching allocator: cudaMalloc calls (misses), allocations asked for, bytes in use\n"
       "and bytes cached for reuse.");
    m.def("empty_cache", &rc::cuda::cache_empty, "Return the cached free blocks to the driver.");

    // ---- streams and graphs
    m.def("set_stream", [](int64_t handle) {
        cudaStream_t s = handle == 0 ? nullptr : stream_from_int(handle);
        // Work already queued (e.g. DeviceArray.zeros' memset) stays ordered before what the
        // new stream runs next, without a host wait.
        if (availability().ok) stream_wait(s, stream());
        rc::cuda::set_current_stream(s);
    }, py::arg("handle"),
       "Launch every op on this cudaStream_t (an integer handle, e.g. torch's\n"
       "Stream.cuda_stream); 0 = the legacy default stream. Process-wide. The new stream is\n"
       "ordered after the work queued so far on the previous one.");
    m.def("current_stream", [] { return (int64_t) reinterpret_cast<uintptr_t>(stream()); },
          "The cudaStream_t handle ops are launched on (0 = legacy default stream).");
    m.def("create_stream", &create_stream,
          "A new non-blocking cudaStream_t (integer handle) for set_stream / graph capture.");
    m.def("destroy_stream", &destroy_stream, py::arg("handle"),
          "Destroy a stream from create_stream (the module falls back to the default stream\n"
          "if it was current).");
    m.def("stream_wait", [](int64_t consumer, int64_t producer) {
        require_device();
        stream_wait(stream_from_int(consumer), stream_from_int(producer));
    }, py::arg("consumer"), py::arg("producer"),
       "Order the work queued next on `consumer` after the work queued so far on `producer`\n"
       "(stream handles; no host wait).");
    py::class_<CudaGraph>(m, "CudaGraph",
        "Capture the ops issued on the current (created) stream between begin() and end(),\n"
        "then replay() them with one launch; the graph keeps the memory it uses alive.")
        .def(py::init<>())
        .def("begin", &CudaGraph::begin)
        .def("end", &CudaGraph::end)
        .def("replay", &CudaGraph::replay)
        .def_property_readonly("num_nodes", &CudaGraph::num_nodes);
    m.def("set_tf32", [](bool on) { rc::cuda::set_tf32(on); }, py::arg("enabled"),
          "Conv and linear GEMMs on TF32 tensor cores (sm_80+; FP32 accumulation) when True;\n"
          "plain FP32 when False (the default). Process-wide.");
    m.def("tf32", [] { return rc::cuda::tf32_enabled(); }, "Whether set_tf32(True) is in effect.");

    bind_device_array(m);
    bind_conv(m);
    bind_batchnorm(m);
    bind_eltwise(m);
    bind_pool(m);
    bind_linear(m);
    bind_loss(m);
    bind_optim(m);
}
