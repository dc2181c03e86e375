// bindings_cuda.cpp: the _cuda extension module. It owns device memory (DeviceArray), answers
// whether CUDA is usable and why not, and exposes one function per kernel with the same
// argument order and checks as the CPU _core functions (NHWC activations, RSCK conv weights).
// Arrays are DeviceArrays, never NumPy arrays: host <-> device copies are explicit
// (DeviceArray.from_numpy / to_numpy). Interop is zero-copy through __cuda_array_interface__
// (v3) and DLPack. The module imports without a driver; calls then raise with the reason.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_common.cuh"
#include "kernels.h"

namespace py = pybind11;
using rc::cuda::current_stream;

#ifndef RESNET_CPP_CUDA_ARCHS
#define RESNET_CPP_CUDA_ARCHS "unknown"
#endif

namespace {

// ------------------------------------------------------------------ availability

struct Availability {
    bool ok = false;
    std::string why;   // empty when ok
    int device = 0;
};

std::string err_text(cudaError_t e) {
    return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// Probed once: driver present, a device present, and this build's kernels run on it.
const Availability& availability() {
    static Availability a;
    static std::once_flag once;
    std::call_once(once, [] {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            cudaGetLastError();
            if (e == cudaErrorNoDevice)
                a.why = "no CUDA device: " + err_text(e);
            else if (e == cudaErrorInsufficientDriver)
                a.why = "no usable CUDA driver (not installed, or older than this build's CUDA "
                        "runtime " + std::to_string(CUDART_VERSION / 1000) + "." +
                        std::to_string(CUDART_VERSION % 1000 / 10) + "): " + err_text(e);
            else
                a.why = "CUDA initialization failed: " + err_text(e);
            return;
        }
        if (n == 0) {
            a.why = "no CUDA device: cudaGetDeviceCount returned 0";
            return;
        }
        e = cudaGetDevice(&a.device);
        if (e == cudaSuccess) e = rc::cuda::kernel_image_status();
        if (e != cudaSuccess) {
            cudaGetLastError();
            a.why = "this build's kernels (CUDA architectures " RESNET_CPP_CUDA_ARCHS
                    ") cannot run on the device: " + err_text(e) +
                    "; rebuild with -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=native";
            return;
        }
        a.ok = true;
    });
    return a;
}

// Raises RuntimeError with the reason when CUDA cannot be used.
void require_device() {
    const Availability& a = availability();
    if (!a.ok) throw std::runtime_error("CUDA is not available: " + a.why);
}

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

// ------------------------------------------------------------------ DeviceArray

enum class DType { f32, i32, i64 };

const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "float32";
        case DType::i32: return "int32";
        default: return "int64";
    }
}
size_t dtype_size(DType t) { return t == DType::i64 ? 8 : 4; }
const char* dtype_typestr(DType t) {
    switch (t) {
        case DType::f32: return "<f4";
        case DType::i32: return "<i4";
        default: return "<i8";
    }
}

DType parse_dtype(const py::handle& obj, const char* name = "dtype") {
    py::dtype d = py::dtype::from_args(py::reinterpret_borrow<py::object>(obj));
    if (d.is(py::dtype::of<float>())) return DType::f32;
    if (d.is(py::dtype::of<int32_t>())) return DType::i32;
    if (d.is(py::dtype::of<int64_t>())) return DType::i64;
    throw py::type_error(std::string(name) + ": expected dtype float32, int32 or int64, got " +
                         std::string(py::str(d)));
}

py::dtype numpy_dtype(DType t) {
    switch (t) {
        case DType::f32: return py::dtype::of<float>();
        case DType::i32: return py::dtype::of<int32_t>();
        default: return py::dtype::of<int64_t>();
    }
}

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& d) {
    std::ostringstream s;
    s << "(";
    for (size_t i = 0; i < d.size(); ++i) {
        if (i) s << ", ";
        if (d[i] < 0) s << "*"; else s << d[i];
    }
    if (d.size() == 1) s << ",";
    s << ")";
    return s.str();
}

int64_t numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) {
        if (d < 0) throw py::value_error("shape: negative dimension in " + shape_str(s));
        if (d && n > std::numeric_limits<int64_t>::max() / d)
            throw py::value_error("shape: too many elements in " + shape_str(s));
        n *= d;
    }
    return n;
}

// A C-contiguous device array. `owner` keeps the memory alive: a DeviceBuffer for arrays
// allocated here, or the foreign Python object for arrays imported through
// __cuda_array_interface__ (released with the GIL held).
struct DeviceArray {
    std::shared_ptr<void> owner;
    void* ptr = nullptr;
    Shape shape;
    DType dtype = DType::f32;
    bool readonly = false;
    int device = 0;

    int64_t size() const { return numel(shape); }
    size_t nbytes() const { return (size_t)size() * dtype_size(dtype); }
    float* f32() const { return static_cast<float*>(ptr); }
};
using ArrayPtr = std::shared_ptr<DeviceArray>;

ArrayPtr new_array(const Shape& shape, DType dtype) {
    require_device();
    auto a = std::make_shared<DeviceArray>();
    a->shape = shape;
    a->dtype = dtype;
    RC_CUDA_CHECK(cudaGetDevice(&a->device));
    auto buf = std::make_shared<rc::cuda::DeviceBuffer>(a->nbytes());
    a->ptr = buf->data();
    a->owner = buf;
    return a;
}

Shape shape_from(const py::handle& obj) {
    Shape s;
    if (py::isinstance<py::int_>(obj)) {
        s.push_back(obj.cast<int64_t>());
    } else {
        for (auto d : py::reinterpret_borrow<py::iterable>(obj)) s.push_back(d.cast<int64_t>());
    }
    numel(s);
    return s;
}

// Stream value for the interop protocols: 1 = legacy default stream, 2 = per-thread default.
cudaStream_t stream_from_int(int64_t v) {
    if (v == 0 || v == 1) return cudaStreamLegacy;
    if (v == 2) return cudaStreamPerThread;
    return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(v));
}
int64_t stream_to_int(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy) return 1;
    if (s == cudaStreamPerThread) return 2;
    return (int64_t) reinterpret_cast<uintptr_t>(s);
}

// Orders `consumer` after all work queued so far on `producer` (no host wait).
void stream_wait(cudaStream_t consumer, cudaStream_t producer) {
    auto norm = [](cudaStream_t s) { return s == nullptr ? cudaStreamLegacy : s; };
    if (norm(consumer) == norm(producer)) return;
    cudaEvent_t ev;
    RC_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, producer);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(consumer, ev, 0);
    cudaEventDestroy(ev);
    RC_CUDA_CHECK(e);
}

// Wraps foreign memory described by __cuda_array_interface__ (v2 or v3), without copying.
ArrayPtr from_cuda_array_interface(const py::object& obj) {
    require_device();
    if (!py::hasattr(obj, "__cuda_array_interface__"))
        throw py::type_error("DeviceArray: expected an object with __cuda_array_interface__, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::dict cai = obj.attr("__cuda_array_interface__");
    auto a = std::make_shared<DeviceArray>();
    a->shape = shape_from(cai["shape"]);
    const std::string ts = py::str(cai["typestr"]);
    if (ts == "<f4") a->dtype = DType::f32;
    else if (ts == "<i4") a->dtype = DType::i32;
    else if (ts == "<i8") a->dtype = DType::i64;
    else throw py::type_error("DeviceArray: typestr " + ts + " is not float32/int32/int64");
    py::tuple data = cai["data"];
    a->ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(data[0].cast<uint64_t>()));
    a->readonly = data[1].cast<bool>();
    if (cai.contains("mask") && !cai["mask"].is_none())
        throw py::value_error("DeviceArray: masked arrays are not supported");
    if (cai.contains("strides") && !cai["strides"].is_none()) {
        // Accept explicit strides only if they describe the C-contiguous layout.
        Shape st = shape_from(cai["strides"]);
        int64_t expect = (int64_t)dtype_size(a->dtype);
        for (int i = (int)a->shape.size() - 1; i >= 0; --i) {
            if (a->shape[i] > 1 && st[i] != expect)
                throw py::value_error("DeviceArray: only C-contiguous arrays can be wrapped "
                                      "(make it contiguous first)");
            expect *= a->shape[i];
        }
    }
    if (a->size() > 0) {
        cudaPointerAttributes attr;
        RC_CUDA_CHECK(cudaPointerGetAttributes(&attr, a->ptr));
        if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
            throw py::value_error("DeviceArray: __cuda_array_interface__ pointer is not device memory");
        a->device = attr.device;
    } else {
        RC_CUDA_CHECK(cudaGetDevice(&a->device));
    }
    if (cai.contains("stream") && !cai["stream"].is_none())
        stream_wait(current_stream(), stream_from_int(cai["stream"].cast<int64_t>()));
    auto* keep = new py::object(obj);
    a->owner = std::shared_ptr<void>(keep, [](void* p) {
        py::gil_scoped_acquire gil;
        delete static_cast<py::object*>(p);
    });
    return a;
}

ArrayPtr from_numpy(const py::handle& obj) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error("from_numpy: expected a NumPy array, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    DType t = parse_dtype(arr.dtype(), "array");
    // A host-side copy only if the input is not C-contiguous (0-d arrays stay 0-d).
    if (!(arr.flags() & py::array::c_style))
        arr = py::module_::import("numpy").attr("ascontiguousarray")(arr);
    Shape shape(arr.shape(), arr.shape() + arr.ndim());
    ArrayPtr a = new_array(shape, t);
    if (a->nbytes()) {
        py::gil_scoped_release nogil;
        cudaStream_t s = current_stream();
        RC_CUDA_CHECK(cudaMemcpyAsync(a->ptr, arr.data(), a->nbytes(), cudaMemcpyHostToDevice, s));
        RC_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    return a;
}

void copy_from_numpy(DeviceArray& a, const py::handle& obj) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error("src: expected a NumPy array");
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    if (parse_dtype(arr.dtype(), "src") != a.dtype)
        throw py::type_error(std::string("src: expected dtype ") + dtype_name(a.dtype) + ", got " +
                             std::string(py::str(arr.dtype())));
    Shape shape(arr.shape(), arr.shape() + arr.ndim());
    if (shape != a.shape)
        throw py::value_error("src: expected shape " + shape_str(a.shape) + ", got " + shape_str(shape));
    if (a.readonly) throw py::value_error("copy_from_numpy: the device array is read-only");
    if (!(arr.flags() & py::array::c_style))
        arr = py::module_::import("numpy").attr("ascontiguousarray")(arr);
    if (a.nbytes()) {
        py::gil_scoped_release nogil;
        cudaStream_t s = current_stream();
        RC_CUDA_CHECK(cudaMemcpyAsync(a.ptr, arr.data(), a.nbytes(), cudaMemcpyHostToDevice, s));
        RC_CUDA_CHECK(cudaStreamSynchronize(s));
    }
}

py::array to_numpy(const DeviceArray& a) {
    std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
    py::array out(numpy_dtype(a.dtype), shape);
    if (a.nbytes()) {
        void* dst = out.mutable_data();
        py::gil_scoped_release nogil;
        cudaStream_t s = current_stream();
        RC_CUDA_CHECK(cudaMemcpyAsync(dst, a.ptr, a.nbytes(), cudaMemcpyDeviceToHost, s));
        RC_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    return out;
}

py::dict cuda_array_interface(const DeviceArray& a) {
    py::dict d;
    py::tuple shape(a.shape.size());
    for (size_t i = 0; i < a.shape.size(); ++i) shape[i] = a.shape[i];
    d["shape"] = shape;
    d["typestr"] = dtype_typestr(a.dtype);
    d["data"] = py::make_tuple((uint64_t) reinterpret_cast<uintptr_t>(a.ptr), a.readonly);
    d["strides"] = py::none();
    d["version"] = 3;
    // Work on this module's stream may still be pending: consumers order after it.
    d["stream"] = stream_to_int(current_stream());
    return d;
}

// ------------------------------------------------------------------ DLPack (v0.x ABI)

struct DLDevice { int32_t device_type; int32_t device_id; };
struct DLDataType { uint8_t code; uint8_t bits; uint16_t lanes; };
struct DLTensor {
    void* data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t* shape;
    int64_t* strides;
    uint64_t byte_offset;
};
struct DLManagedTensor {
    DLTensor dl_tensor;
    void* manager_ctx;
    void (*deleter)(DLManagedTensor*);
};
constexpr int32_t kDLCUDA = 2;
constexpr uint8_t kDLInt = 0, kDLFloat = 2;

// Owns the shape/stride arrays and a reference to the memory for the consumer's lifetime.
struct DLContext {
    std::shared_ptr<void> owner;
    Shape shape, strides;
    DLManagedTensor mt;
};

void dl_deleter(DLManagedTensor* mt) { delete static_cast<DLContext*>(mt->manager_ctx); }

void dl_capsule_destructor(PyObject* cap) {
    // Still named "dltensor": nobody consumed it, so we free it (consumers rename it).
    if (PyCapsule_IsValid(cap, "dltensor")) {
        auto* mt = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
        if (mt && mt->deleter) mt->deleter(mt);
    } else {
        PyErr_Clear();
    }
}

// max_version is accepted and ignored: we always produce the unversioned (v0.x) capsule,
// which every consumer still accepts.
py::object to_dlpack(const DeviceArray& a, const py::object& stream, const py::object& max_version,
                     const py::object& dl_device, const py::object& copy) {
    if (!dl_device.is_none()) {
        py::tuple dev = dl_device;
        if (dev[0].cast<int>() != kDLCUDA || dev[1].cast<int>() != a.device)
            throw py::buffer_error("__dlpack__: cannot export to another device (no copies)");
    }
    if (!copy.is_none() && copy.cast<bool>())
        throw py::buffer_error("__dlpack__: copy=True is not supported (export is zero-copy)");
    // The consumer will use `stream`; make it wait for our pending work. -1: no sync asked.
    const int64_t sv = stream.is_none() ? 1 : stream.cast<int64_t>();
    if (sv != -1) stream_wait(stream_from_int(sv), current_stream());

    auto* ctx = new DLContext;
    ctx->owner = a.owner;
    ctx->shape = a.shape;
    ctx->strides.assign(a.shape.size(), 1);
    for (int i = (int)a.shape.size() - 2; i >= 0; --i)
        ctx->strides[i] = ctx->strides[i + 1] * std::max<int64_t>(a.shape[i + 1], 1);
    DLTensor& t = ctx->mt.dl_tensor;
    t.data = a.ptr;
    t.device = {kDLCUDA, a.device};
    t.ndim = (int32_t)a.shape.size();
    t.dtype = {a.dtype == DType::f32 ? kDLFloat : kDLInt, (uint8_t)(8 * dtype_size(a.dtype)), 1};
    t.shape = ctx->shape.data();
    t.strides = ctx->strides.data();
    t.byte_offset = 0;
    ctx->mt.manager_ctx = ctx;
    ctx->mt.deleter = dl_deleter;
    PyObject* cap = PyCapsule_New(&ctx->mt, "dltensor", dl_capsule_destructor);
    if (!cap) {
        delete ctx;
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(cap);
}

// ------------------------------------------------------------------ argument checks

// Shape pattern: a non-negative entry must match exactly; -1 accepts any size >= 1.
using Dims = std::vector<int64_t>;

ArrayPtr as_array(const py::handle& obj, const char* name) {
    if (obj.is_none() || !py::isinstance<DeviceArray>(obj))
        throw py::type_error(std::string(name) + ": expected a resnet_cpp._cuda.DeviceArray " +
                             "(use resnet_cpp.cuda.to_device), got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    return obj.cast<ArrayPtr>();
}

void check_shape(const DeviceArray& a, const char* name, const Dims& dims) {
    if (a.shape.size() != dims.size())
        throw py::value_error(std::string(name) + ": expected " + std::to_string(dims.size()) +
                              "-d array of shape " + shape_str(dims) + ", got shape " +
                              shape_str(a.shape));
    for (size_t i = 0; i < dims.size(); ++i) {
        const bool ok = dims[i] >= 0 ? a.shape[i] == dims[i] : a.shape[i] >= 1;
        if (!ok)
            throw py::value_error(std::string(name) + ": expected shape " + shape_str(dims) +
                                  " (* = any size >= 1), got " + shape_str(a.shape));
    }
}

// Checks dtype, shape, size (kernels index with int), device and (for in-place arguments)
// writeability; errors name the argument.
ArrayPtr require(const py::handle& obj, const char* name, DType t, const Dims& dims,
                 bool writable = false) {
    ArrayPtr a = as_array(obj, name);
    if (a->dtype != t)
        throw py::type_error(std::string(name) + ": expected dtype " + dtype_name(t) + ", got " +
                             dtype_name(a->dtype));
    check_shape(*a, name, dims);
    if (a->size() > std::numeric_limits<int32_t>::max())
        throw py::value_error(std::string(name) + ": more than 2^31-1 elements is not supported");
    if (writable && a->readonly)
        throw py::value_error(std::string(name) + ": expected a writeable array (it is written in place)");
    int dev = 0;
    RC_CUDA_CHECK(cudaGetDevice(&dev));
    if (a->device != dev)
        throw py::value_error(std::string(name) + ": array is on device " + std::to_string(a->device) +
                              ", the current device is " + std::to_string(dev));
    return a;
}

ArrayPtr require_f32(const py::handle& obj, const char* name, const Dims& dims, bool writable = false) {
    return require(obj, name, DType::f32, dims, writable);
}

// Any-shape float32 array with ndim >= 1 and no empty dimension.
ArrayPtr require_any(const py::handle& obj, const char* name) {
    ArrayPtr a = as_array(obj, name);
    if (a->shape.empty())
        throw py::value_error(std::string(name) + ": expected an array with ndim >= 1, got a 0-d array");
    return require_f32(obj, name, Dims(a->shape.size(), -1));
}

// A fresh output, or the caller's `out` checked (dtype, shape, writeable).
ArrayPtr output(const py::object& out, const char* name, const Dims& dims, DType t = DType::f32) {
    if (out.is_none()) return new_array(dims, t);
    return require(out, name, t, dims, /*writable=*/true);
}

void require_range(int64_t v, const char* name, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        throw py::value_error(std::string(name) + ": expected an integer in [" + std::to_string(lo) +
                              ", " + std::to_string(hi) + "], got " + std::to_string(v));
}

// Leading dimension 0 on a 4-d activation: the CPU bindings' "empty batch" error.
void require_batch(const py::handle& obj, const char* name) {
    if (py::isinstance<DeviceArray>(obj)) {
        ArrayPtr a = obj.cast<ArrayPtr>();
        if (!a->shape.empty() && a->shape[0] == 0)
            throw py::value_error(std::string(name) + ": empty batch (N = 0)");
    }
}

// Two arrays written/read by one kernel pass must not overlap in memory.
void require_distinct(const DeviceArray& a, const char* an, const DeviceArray& b, const char* bn) {
    const auto a0 = reinterpret_cast<uintptr_t>(a.ptr), b0 = reinterpret_cast<uintptr_t>(b.ptr);
    if (a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes())
        throw py::value_error(std::string(an) + ": must not share memory with " + bn);
}

Dims dims_of(const DeviceArray& a) { return a.shape; }

// ------------------------------------------------------------------ conv

rc::ConvShape checked_conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t R,
                                 int64_t S, int64_t stride, int64_t pad) {
    require_range(stride, "stride", 1, 1 << 20);
    require_range(pad, "pad", 0, std::min(R, S) - 1);
    if (N < 1) throw py::value_error("x: empty batch (N = 0)");
    rc::ConvShape s = rc::make_conv_shape(N, H, W, C, K, R, S, stride, pad);
    if (H + 2 * pad < R || W + 2 * pad < S || s.P < 1 || s.Q < 1)
        throw py::value_error("output size < 1: input " + std::to_string(H) + "x" +
                              std::to_string(W) + " with kernel " + std::to_string(R) + "x" +
                              std::to_string(S) + ", pad " + std::to_string(pad));
    // The implicit-GEMM kernels index the (R*S*C) and (N*P*Q) dimensions with int.
    if (R * S * C > std::numeric_limits<int32_t>::max() || R * S * K > std::numeric_limits<int32_t>::max() ||
        N * s.P * s.Q * K > std::numeric_limits<int32_t>::max())
        throw py::value_error("conv: problem too large for 32-bit indexing");
    return s;
}

ArrayPtr conv_fwd(const py::object& xo, const py::object& wo, const py::object& bo, int64_t stride,
                  int64_t pad, const py::object& out) {
    require_batch(xo, "x");
    ArrayPtr x = require_f32(xo, "x", {-1, -1, -1, -1});
    ArrayPtr w = require_f32(wo, "w", {-1, -1, -1, -1});
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    const int64_t R = w->shape[0], S = w->shape[1], K = w->shape[3];
    require_f32(wo, "w", {R, S, C, K});
    ArrayPtr b;
    if (!bo.is_none()) b = require_f32(bo, "b", {K});
    rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
    ArrayPtr y = output(out, "out", {N, s.P, s.Q, K});
    require_distinct(*y, "out", *x, "x");
    {
        py::gil_scoped_release nogil;
        rc::cuda::conv2d_forward(x->f32(), w->f32(), b ? b->f32() : nullptr, y->f32(), s, current_stream());
    }
    return y;
}

ArrayPtr conv_bwd_data(const py::object& dyo, const py::object& wo, int64_t H, int64_t W,
                       int64_t stride, int64_t pad, const py::object& out) {
    require_batch(dyo, "dy");
    ArrayPtr dy = require_f32(dyo, "dy", {-1, -1, -1, -1});
    ArrayPtr w = require_f32(wo, "w", {-1, -1, -1, -1});
    const int64_t N = dy->shape[0], K = dy->shape[3];
    const int64_t R = w->shape[0], S = w->shape[1], C = w->shape[2];
    require_f32(wo, "w", {R, S, C, K});
    require_range(H, "H", 1, int64_t(1) << 30);
    require_range(W, "W", 1, int64_t(1) << 30);
    rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
    require_f32(dyo, "dy", {N, s.P, s.Q, K});
    ArrayPtr dx = output(out, "out", {N, H, W, C});
    require_distinct(*dx, "out", *dy, "dy");
    {
        py::gil_scoped_release nogil;
        rc::cuda::conv2d_backward_data(dy->f32(), w->f32(), dx->f32(), s, current_stream());
    }
    return dx;
}

py::tuple conv_bwd_weight(const py::object& xo, const py::object& dyo, int64_t R, int64_t S,
                          int64_t stride, int64_t pad, bool with_bias, const py::object& dw_out,
                          const py::object& db_out) {
    require_batch(xo, "x");
    require_batch(dyo, "dy");
    ArrayPtr x = require_f32(xo, "x", {-1, -1, -1, -1});
    ArrayPtr dy = require_f32(dyo, "dy", {-1, -1, -1, -1});
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3], K = dy->shape[3];
    require_range(R, "R", 1, 1 << 16);
    require_range(S, "S", 1, 1 << 16);
    rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
    require_f32(dyo, "dy", {N, s.P, s.Q, K});
    ArrayPtr dw = output(dw_out, "dw_out", {R, S, C, K});
    ArrayPtr db;
    if (with_bias) db = output(db_out, "db_out", {K});
    else if (!db_out.is_none()) throw py::value_error("db_out: given but with_bias is False");
    require_distinct(*dw, "dw_out", *x, "x");
    require_distinct(*dw, "dw_out", *dy, "dy");
    {
        py::gil_scoped_release nogil;
        rc::cuda::conv2d_backward_weight(x->f32(), dy->f32(), dw->f32(), db ? db->f32() : nullptr, s,
                                         current_stream());
    }
    return py::make_tuple(dw, db ? py::cast(db) : py::none());
}

// ------------------------------------------------------------------ batch norm

// An activation (N,H,W,C) or (M,C), viewed as (M, C).
struct Act {
    ArrayPtr a;
    int64_t M, C;
};

Act require_act(const py::handle& obj, const char* name) {
    ArrayPtr a0 = as_array(obj, name);
    const bool two_d = a0->shape.size() == 2;
    ArrayPtr a = require_f32(obj, name, two_d ? Dims{-1, -1} : Dims{-1, -1, -1, -1});
    const int64_t C = a->shape.back();
    return {a, a->size() / C, C};
}

void require_unit_interval(double v, const char* name) {
    if (!(v >= 0.0 && v <= 1.0))
        throw py::value_error(std::string(name) + ": expected a number in [0, 1], got " + std::to_string(v));
}

void require_eps(double eps) {
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite positive number, got " + std::to_string(eps));
}

py::tuple bn_fwd_train(const py::object& x_, const py::object& gamma_, const py::object& beta_,
                       const py::object& rm_, const py::object& rv_, double momentum, double eps,
                       bool relu, const py::object& out, const py::object& mean_out,
                       const py::object& rstd_out) {
    Act x = require_act(x_, "x");
    const Dims c{x.C};
    ArrayPtr gamma = require_f32(gamma_, "gamma", c);
    ArrayPtr beta = require_f32(beta_, "beta", c);
    ArrayPtr rm = require_f32(rm_, "running_mean", c, true);
    ArrayPtr rv = require_f32(rv_, "running_var", c, true);
    require_unit_interval(momentum, "momentum");
    require_eps(eps);
    if (x.M < 2)
        throw py::value_error("x: training batch norm needs more than one value per channel "
                              "(N*H*W > 1), got shape " + shape_str(x.a->shape));
    ArrayPtr y = output(out, "out", dims_of(*x.a));
    ArrayPtr mean = output(mean_out, "mean_out", c);
    ArrayPtr rstd = output(rstd_out, "rstd_out", c);
    {
        py::gil_scoped_release nogil;
        rc::cuda::batch_norm_forward_train(x.a->f32(), gamma->f32(), beta->f32(), rm->f32(), rv->f32(),
                                           y->f32(), mean->f32(), rstd->f32(), x.M, x.C, momentum,
                                           eps, relu, current_stream());
    }
    return py::make_tuple(y, mean, rstd);
}

ArrayPtr bn_fwd_eval(const py::object& x_, const py::object& gamma_, const py::object& beta_,
                     const py::object& rm_, const py::object& rv_, double eps, bool relu,
                     const py::object& out) {
    Act x = require_act(x_, "x");
    const Dims c{x.C};
    ArrayPtr gamma = require_f32(gamma_, "gamma", c);
    ArrayPtr beta = require_f32(beta_, "beta", c);
    ArrayPtr rm = require_f32(rm_, "running_mean", c);
    ArrayPtr rv = require_f32(rv_, "running_var", c);
    require_eps(eps);
    ArrayPtr y = output(out, "out", dims_of(*x.a));
    {
        py::gil_scoped_release nogil;
        rc::cuda::batch_norm_forward_eval(x.a->f32(), gamma->f32(), beta->f32(), rm->f32(), rv->f32(),
                                          y->f32(), x.M, x.C, eps, relu, current_stream());
    }
    return y;
}

py::tuple bn_bwd(const py::object& dy_, const py::object& x_, const py::object& gamma_,
                 const py::object& mean_, const py::object& rstd_, const py::object& y_, bool train,
                 const py::object& out, const py::object& dgamma_out, const py::object& dbeta_out) {
    Act x = require_act(x_, "x");
    ArrayPtr dy = require_f32(dy_, "dy", dims_of(*x.a));
    const Dims c{x.C};
    ArrayPtr gamma = require_f32(gamma_, "gamma", c);
    ArrayPtr mean = require_f32(mean_, "mean", c);
    ArrayPtr rstd = require_f32(rstd_, "rstd", c);
    ArrayPtr y;
    if (!y_.is_none()) y = require_f32(y_, "y", dims_of(*x.a));
    ArrayPtr dx = output(out, "out", dims_of(*x.a));
    // dx is written while x and y are still read by the same pass: no aliasing.
    require_distinct(*dx, "out", *x.a, "x");
    if (y) require_distinct(*dx, "out", *y, "y");
    ArrayPtr dgamma = output(dgamma_out, "dgamma_out", c);
    ArrayPtr dbeta = output(dbeta_out, "dbeta_out", c);
    {
        py::gil_scoped_release nogil;
        rc::cuda::batch_norm_backward(dy->f32(), x.a->f32(), gamma->f32(), mean->f32(), rstd->f32(),
                                      y ? y->f32() : nullptr, dx->f32(), dgamma->f32(), dbeta->f32(),
                                      x.M, x.C, train, current_stream());
    }
    return py::make_tuple(dx, dgamma, dbeta);
}

// ------------------------------------------------------------------ elementwise

ArrayPtr relu_fwd(const py::object& x_, const py::object& out) {
    ArrayPtr x = require_any(x_, "x");
    ArrayPtr y = output(out, "out", dims_of(*x));
    {
        py::gil_scoped_release nogil;
        rc::cuda::relu_forward(x->f32(), y->f32(), x->size(), current_stream());
    }
    return y;
}

ArrayPtr relu_bwd(const py::object& dy_, const py::object& y_, const py::object& out) {
    ArrayPtr dy = require_any(dy_, "dy");
    ArrayPtr y = require_f32(y_, "y", dims_of(*dy));
    ArrayPtr dx = output(out, "out", dims_of(*dy));
    {
        py::gil_scoped_release nogil;
        rc::cuda::relu_backward(dy->f32(), y->f32(), dx->f32(), dy->size(), current_stream());
    }
    return dx;
}

ArrayPtr add_fwd(const py::object& a_, const py::object& b_, const py::object& out, bool relu) {
    ArrayPtr a = require_any(a_, "a");
    ArrayPtr b = require_f32(b_, "b", dims_of(*a));
    ArrayPtr y = output(out, "out", dims_of(*a));
    {
        py::gil_scoped_release nogil;
        rc::cuda::add_forward(a->f32(), b->f32(), y->f32(), a->size(), relu, current_stream());
    }
    return y;
}

ArrayPtr layout(const py::object& x_, const py::object& out, bool to_nhwc) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    const Shape& d = x->shape;
    // to_nhwc: x (N,C,H,W) -> (N,H,W,C); else x (N,H,W,C) -> (N,C,H,W).
    const int64_t N = d[0];
    const int64_t C = to_nhwc ? d[1] : d[3];
    const int64_t H = to_nhwc ? d[2] : d[1], W = to_nhwc ? d[3] : d[2];
    ArrayPtr y = output(out, "out", to_nhwc ? Dims{N, H, W, C} : Dims{N, C, H, W});
    require_distinct(*y, "out", *x, "x");
    {
        py::gil_scoped_release nogil;
        if (to_nhwc) rc::cuda::nchw_to_nhwc(x->f32(), y->f32(), N, C, H * W, current_stream());
        else rc::cuda::nhwc_to_nchw(x->f32(), y->f32(), N, C, H * W, current_stream());
    }
    return y;
}

// ------------------------------------------------------------------ pooling

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

py::tuple max_pool_fwd(const py::object& x_, int64_t k, int64_t stride, int64_t pad,
                       const py::object& out, const py::object& argmax_out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    require_range(k, "k", 1, 1 << 16);
    require_range(stride, "stride", 1, 1 << 16);
    require_range(pad, "pad", 0, k / 2);
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (H * W > kMaxDim) throw py::value_error("x: H*W must fit in int32 (argmax is int32)");
    if (H + 2 * pad < k || W + 2 * pad < k)
        throw py::value_error("k: window " + std::to_string(k) + " is larger than the padded input " +
                              std::to_string(H + 2 * pad) + "x" + std::to_string(W + 2 * pad));
    rc::PoolShape s = rc::make_pool_shape(N, H, W, C, k, stride, pad);
    ArrayPtr y = output(out, "out", {N, s.P, s.Q, C});
    ArrayPtr am = output(argmax_out, "argmax_out", {N, s.P, s.Q, C}, DType::i32);
    require_distinct(*y, "out", *x, "x");
    {
        py::gil_scoped_release nogil;
        rc::cuda::max_pool2d_forward(x->f32(), y->f32(), static_cast<int32_t*>(am->ptr), s,
                                     current_stream());
    }
    return py::make_tuple(y, am);
}

ArrayPtr max_pool_bwd(const py::object& dy_, const py::object& argmax_, int64_t H, int64_t W,
                      int64_t k, int64_t stride, int64_t pad, const py::object& out) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1, -1, -1});
    const int64_t N = dy->shape[0], P = dy->shape[1], Q = dy->shape[2], C = dy->shape[3];
    ArrayPtr am = require(argmax_, "argmax", DType::i32, {N, P, Q, C});
    require_range(H, "H", 1, kMaxDim);
    require_range(W, "W", 1, kMaxDim);
    if (H * W > kMaxDim) throw py::value_error("H: H*W must fit in int32 (argmax is int32)");
    require_range(k, "k", 1, 1 << 16);
    require_range(stride, "stride", 1, 1 << 16);
    require_range(pad, "pad", 0, k / 2);
    if (H + 2 * pad < k || W + 2 * pad < k)
        throw py::value_error("k: window " + std::to_string(k) + " is larger than the padded input");
    rc::PoolShape s = rc::make_pool_shape(N, H, W, C, k, stride, pad);
    if (s.P != P || s.Q != Q)
        throw py::value_error("dy: expected shape " + shape_str({N, s.P, s.Q, C}) + " for a " +
                              std::to_string(H) + "x" + std::to_string(W) + " input with k=" +
                              std::to_string(k) + ", stride=" + std::to_string(stride) + ", pad=" +
                              std::to_string(pad) + ", got " + shape_str(dy->shape));
    ArrayPtr dx = output(out, "out", {N, H, W, C});
    require_distinct(*dx, "out", *dy, "dy");
    {
        py::gil_scoped_release nogil;
        rc::cuda::max_pool2d_backward(dy->f32(), static_cast<const int32_t*>(am->ptr), dx->f32(), s,
                                      current_stream());
    }
    return dx;
}

ArrayPtr gap_fwd(const py::object& x_, const py::object& out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    ArrayPtr y = output(out, "out", {N, C});
    {
        py::gil_scoped_release nogil;
        rc::cuda::global_avg_pool_forward(x->f32(), y->f32(), N, H * W, C, current_stream());
    }
    return y;
}

ArrayPtr gap_bwd(const py::object& dy_, int64_t H, int64_t W, const py::object& out) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1});
    require_range(H, "H", 1, kMaxDim);
    require_range(W, "W", 1, kMaxDim);
    const int64_t N = dy->shape[0], C = dy->shape[1];
    if (N * H * W * C > kMaxDim) throw py::value_error("out: more than 2^31-1 elements is not supported");
    ArrayPtr dx = output(out, "out", {N, H, W, C});
    {
        py::gil_scoped_release nogil;
        rc::cuda::global_avg_pool_backward(dy->f32(), dx->f32(), N, H * W, C, current_stream());
    }
    return dx;
}

// ------------------------------------------------------------------ linear

ArrayPtr linear_fwd(const py::object& x_, const py::object& w_, const py::object& b_,
                    const py::object& out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1});
    const int64_t N = x->shape[0], F = x->shape[1];
    ArrayPtr w = require_f32(w_, "w", {-1, F});
    const int64_t O = w->shape[0];
    ArrayPtr b;
    if (!b_.is_none()) b = require_f32(b_, "b", {O});
    ArrayPtr y = output(out, "out", {N, O});
    require_distinct(*y, "out", *x, "x");
    {
        py::gil_scoped_release nogil;
        rc::cuda::linear_forward(x->f32(), w->f32(), b ? b->f32() : nullptr, y->f32(), N, F, O,
                                 current_stream());
    }
    return y;
}

py::tuple linear_bwd(const py::object& dy_, const py::object& x_, const py::object& w_, bool need_dx,
                     bool with_bias, const py::object& dx_out, const py::object& dw_out,
                     const py::object& db_out) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1});
    const int64_t N = dy->shape[0], O = dy->shape[1];
    ArrayPtr x = require_f32(x_, "x", {N, -1});
    const int64_t F = x->shape[1];
    ArrayPtr w = require_f32(w_, "w", {O, F});
    ArrayPtr dx, db;
    if (need_dx) dx = output(dx_out, "dx_out", {N, F});
    else if (!dx_out.is_none()) throw py::value_error("dx_out: given but need_dx is False");
    ArrayPtr dw = output(dw_out, "dw_out", {O, F});
    if (with_bias) db = output(db_out, "db_out", {O});
    else if (!db_out.is_none()) throw py::value_error("db_out: given but with_bias is False");
    if (dx) require_distinct(*dx, "dx_out", *dy, "dy");
    require_distinct(*dw, "dw_out", *dy, "dy");
    require_distinct(*dw, "dw_out", *x, "x");
    {
        py::gil_scoped_release nogil;
        rc::cuda::linear_backward(dy->f32(), x->f32(), w->f32(), dx ? dx->f32() : nullptr, dw->f32(),
                                  db ? db->f32() : nullptr, N, F, O, current_stream());
    }
    return py::make_tuple(dx ? py::cast(dx) : py::none(), dw, db ? py::cast(db) : py::none());
}

// ------------------------------------------------------------------ loss

py::tuple xent(const py::object& logits_, const py::object& labels_, double ls,
               const py::object& dlogits_out, const py::object& loss_out, bool check_labels) {
    ArrayPtr z = require_f32(logits_, "logits", {-1, -1});
    const int64_t N = z->shape[0], K = z->shape[1];
    ArrayPtr lab = as_array(labels_, "labels");
    if (lab->dtype == DType::f32)
        throw py::type_error("labels: expected dtype int32 or int64, got float32");
    lab = require(labels_, "labels", lab->dtype, {N});
    if (!(ls >= 0.0 && ls < 1.0))
        throw py::value_error("label_smoothing: expected a number in [0, 1), got " + std::to_string(ls));
    ArrayPtr d = output(dlogits_out, "dlogits_out", {N, K});
    ArrayPtr loss = output(loss_out, "loss_out", {});
    require_distinct(*d, "dlogits_out", *z, "logits");
    int32_t bad_row = rc::cuda::kNoBadRow;
    {
        py::gil_scoped_release nogil;
        cudaStream_t s = current_stream();
        // Stream-ordered scratch (no cudaFree), so the call is legal inside graph capture.
        rc::cuda::Scratch bad(sizeof(int32_t), s);
        rc::cuda::softmax_cross_entropy(z->f32(), lab->ptr, lab->dtype == DType::i64, N, K, ls,
                                        d->f32(), loss->f32(), bad.as<int32_t>(), s);
        if (check_labels) {
            RC_CUDA_CHECK(cudaMemcpyAsync(&bad_row, bad.as<int32_t>(), sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, s));
            RC_CUDA_CHECK(cudaStreamSynchronize(s));
        }
    }
    if (check_labels && bad_row != rc::cuda::kNoBadRow)
        throw py::value_error("labels: labels[" + std::to_string(bad_row) +
                              "] is outside [0, K) = [0, " + std::to_string(K) + ")");
    return py::make_tuple(loss, d);
}

// ------------------------------------------------------------------ optimizers

// Same checks, in the same order, as the CPU bindings (cpp/bindings/optim.cpp).
void require_finite_nonneg(double v, const char* name) {
    if (!(v >= 0.0 && std::isfinite(v)))
        throw py::value_error(std::string(name) + ": expected a finite number >= 0, got " +
                              std::to_string(v));
}

void require_unit(double v, const char* name) {
    if (!(v >= 0.0 && v < 1.0))
        throw py::value_error(std::string(name) + ": expected a number in [0, 1), got " + std::to_string(v));
}

// A hyperparameter given as a number (checked like the CPU bindings) or as a one-element
// device array (read by the kernel at run time; for CUDA graphs). Returns the device pointer
// or null.
template <typename T>
const T* scalar_or_device(const py::object& obj, const char* name, DType t, double& value,
                          void (*check)(double, const char*)) {
    if (py::isinstance<DeviceArray>(obj)) {
        ArrayPtr a = obj.cast<ArrayPtr>();
        if (a->size() != 1)
            throw py::value_error(std::string(name) + ": a device array must hold one value, got shape " +
                                  shape_str(a->shape));
        a = require(obj, name, t, a->shape);
        value = 0.0;
        return static_cast<const T*>(a->ptr);
    }
    value = obj.cast<double>();
    check(value, name);
    return nullptr;
}

void require_step(double v, const char* name) {
    if (!(v >= 1.0 && v == std::floor(v) && v <= 9.0e15))
        throw py::value_error(std::string(name) + ": expected an integer >= 1, got " + std::to_string(v));
}

ArrayPtr require_param(const py::object& obj) {
    ArrayPtr a = require_any(obj, "param");
    if (a->readonly) throw py::value_error("param: expected a writeable array (it is written in place)");
    return a;
}

void sgd(const py::object& p_, const py::object& g_, const py::object& buf_, const py::object& lr_,
         double momentum, double weight_decay, bool nesterov) {
    ArrayPtr p = require_param(p_);
    ArrayPtr g = require_f32(g_, "grad", dims_of(*p));
    double lr = 0.0;
    const float* lr_dev = scalar_or_device<float>(lr_, "lr", DType::f32, lr, require_finite_nonneg);
    require_finite_nonneg(momentum, "momentum");
    require_finite_nonneg(weight_decay, "weight_decay");
    if (nesterov && momentum == 0.0)
        throw py::value_error("nesterov: Nesterov momentum requires momentum > 0");
    ArrayPtr buf;
    if (momentum > 0.0) {
        if (buf_.is_none())
            throw py::value_error("momentum_buf: required when momentum > 0 (start with zeros)");
        buf = require_f32(buf_, "momentum_buf", dims_of(*p), true);
        require_distinct(*buf, "momentum_buf", *p, "param");
    } else if (!buf_.is_none()) {
        require_f32(buf_, "momentum_buf", dims_of(*p));
    }
    {
        py::gil_scoped_release nogil;
        rc::cuda::sgd_step(p->f32(), g->f32(), buf ? buf->f32() : nullptr, p->size(), lr, lr_dev,
                           momentum, weight_decay, nesterov, current_stream());
    }
}

void adam(const py::object& p_, const py::object& g_, const py::object& m_, const py::object& v_,
          const py::object& step_, const py::object& lr_, double beta1, double beta2, double eps,
          double weight_decay, bool decoupled) {
    ArrayPtr p = require_param(p_);
    ArrayPtr g = require_f32(g_, "grad", dims_of(*p));
    ArrayPtr m = require_f32(m_, "m", dims_of(*p), true);
    ArrayPtr v = require_f32(v_, "v", dims_of(*p), true);
    require_distinct(*m, "m", *p, "param");
    require_distinct(*v, "v", *p, "param");
    require_distinct(*m, "m", *v, "v");
    double step = 0.0, lr = 0.0;
    if (!py::isinstance<DeviceArray>(step_) && !py::isinstance<py::int_>(step_))
        throw py::type_error("step: expected an int or a one-element int64 DeviceArray");
    const int64_t* step_dev = scalar_or_device<int64_t>(step_, "step", DType::i64, step, require_step);
    const float* lr_dev = scalar_or_device<float>(lr_, "lr", DType::f32, lr, require_finite_nonneg);
    require_unit(beta1, "beta1");
    require_unit(beta2, "beta2");
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite number > 0, got " + std::to_string(eps));
    require_finite_nonneg(weight_decay, "weight_decay");
    {
        py::gil_scoped_release nogil;
        rc::cuda::adam_step(p->f32(), g->f32(), m->f32(), v->f32(), p->size(), (int64_t)step,
                            step_dev, lr, lr_dev, beta1, beta2, eps, weight_decay, decoupled,
                            current_stream());
    }
}

// ------------------------------------------------------------------ streams and graphs

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
    if (s == current_stream()) rc::cuda::set_current_stream(nullptr);
    RC_CUDA_CHECK(cudaStreamDestroy(s));
}

// CUDA graph of the ops issued between begin() and end() on the module's current stream,
// which must be a created (non-default) stream. Replays re-run the same kernels on the same
// device addresses: every DeviceArray used while capturing must stay alive (and must not be
// freed during the capture) for as long as the graph is replayed. Per-op scratch is
// stream-ordered (cudaMallocAsync), so it becomes graph memory nodes; check_labels must be
// False in softmax_cross_entropy (it waits for the host), and scalars (lr, Adam's step) are
// frozen at their captured values.
class CudaGraph {
  public:
    CudaGraph() = default;
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;
    ~CudaGraph() { reset(); }

    void begin() {
        require_device();
        if (capturing_) throw py::value_error("CudaGraph.begin: already capturing");
        cudaStream_t s = current_stream();
        if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread)
            throw py::value_error("CudaGraph.begin: capture needs a created stream; call "
                                  "set_stream(create_stream()) first");
        reset();
        RC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
        stream_ = s;
        capturing_ = true;
    }

    void end() {
        if (!capturing_) throw py::value_error("CudaGraph.end: begin() was not called");
        capturing_ = false;
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
    // Never throws: also runs from the destructor.
    void reset() {
        if (capturing_) {
            cudaGraph_t g = nullptr;
            if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
            cudaGetLastError();
            capturing_ = false;
        }
        if (exec_) cudaGraphExecDestroy(exec_);
        if (graph_) cudaGraphDestroy(graph_);
        exec_ = nullptr;
        graph_ = nullptr;
    }

    cudaStream_t stream_ = nullptr;
    cudaGraph_t graph_ = nullptr;
    cudaGraphExec_t exec_ = nullptr;
    bool capturing_ = false;
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
        RC_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
    }, "Wait for all work queued on the module's stream; raises any asynchronous kernel error.");
    m.def("set_stream", [](int64_t handle) {
        cudaStream_t s = handle == 0 ? nullptr : stream_from_int(handle);
        // Work already queued (e.g. DeviceArray.zeros' memset) stays ordered before what the
        // new stream runs next, without a host wait.
        if (availability().ok) stream_wait(s, current_stream());
        rc::cuda::set_current_stream(s);
    }, py::arg("handle"),
       "Launch every op on this cudaStream_t (an integer handle, e.g. torch's\n"
       "Stream.cuda_stream); 0 = the legacy default stream. Process-wide. The new stream is\n"
       "ordered after the work queued so far on the previous one.");
    m.def("set_tf32", [](bool on) { rc::cuda::set_tf32(on); }, py::arg("enabled"),
          "Conv and linear GEMMs on TF32 tensor cores (sm_80+; FP32 accumulation) when True;\n"
          "plain FP32 when False (the default). Process-wide.");
    m.def("tf32", [] { return rc::cuda::tf32_enabled(); }, "Whether set_tf32(True) is in effect.");
    m.def("current_stream", [] { return (int64_t) reinterpret_cast<uintptr_t>(current_stream()); },
          "The cudaStream_t handle ops are launched on (0 = legacy default stream).");

    m.def("create_stream", &create_stream,
          "A new non-blocking cudaStream_t (integer handle) for set_stream / graph capture.");
    m.def("destroy_stream", &destroy_stream, py::arg("handle"),
          "Destroy a stream from create_stream (the module falls back to the default stream\n"
          "if it was current).");
    py::class_<CudaGraph>(m, "CudaGraph",
        "Capture the ops issued on the current (created) stream between begin() and end(),\n"
        "then replay() them with one launch. Keep every array used alive while replaying.")
        .def(py::init<>())
        .def("begin", &CudaGraph::begin)
        .def("end", &CudaGraph::end)
        .def("replay", &CudaGraph::replay)
        .def_property_readonly("num_nodes", &CudaGraph::num_nodes);

    // ---- DeviceArray
    py::class_<DeviceArray, ArrayPtr>(m, "DeviceArray",
        "A C-contiguous float32/int32/int64 array in device memory.\n"
        "DeviceArray(obj) wraps any object exposing __cuda_array_interface__ without copying.")
        .def(py::init(&from_cuda_array_interface), py::arg("obj"))
        .def_static("from_numpy", &from_numpy, py::arg("array"),
                    "Copy a NumPy float32/int32/int64 array to the device.")
        .def_static("empty", [](const py::object& shape, const py::object& dtype) {
            return new_array(shape_from(shape), parse_dtype(dtype));
        }, py::arg("shape"), py::arg("dtype") = "float32", "Uninitialized device array.")
        .def_static("zeros", [](const py::object& shape, const py::object& dtype) {
            ArrayPtr a = new_array(shape_from(shape), parse_dtype(dtype));
            if (a->nbytes()) RC_CUDA_CHECK(cudaMemsetAsync(a->ptr, 0, a->nbytes(), current_stream()));
            return a;
        }, py::arg("shape"), py::arg("dtype") = "float32", "Zero-filled device array.")
        .def("to_numpy", &to_numpy, "Copy to a new NumPy array (waits for pending work).")
        .def("copy_from_numpy", &copy_from_numpy, py::arg("src"),
             "Overwrite with a host array of the same shape and dtype.")
        .def("zero_", [](DeviceArray& a) {
            if (a.readonly) throw py::value_error("zero_: the device array is read-only");
            if (a.nbytes()) RC_CUDA_CHECK(cudaMemsetAsync(a.ptr, 0, a.nbytes(), current_stream()));
        }, "Fill with zeros (asynchronous, on the module's stream).")
        .def("reshape", [](const DeviceArray& a, const py::args& args) {
            py::object spec = args.size() == 1 ? py::object(args[0]) : py::object(args);
            Shape s;
            if (py::isinstance<py::int_>(spec)) s.push_back(spec.cast<int64_t>());
            else for (auto d : py::reinterpret_borrow<py::iterable>(spec)) s.push_back(d.cast<int64_t>());
            int infer = -1;
            int64_t known = 1;
            for (size_t i = 0; i < s.size(); ++i) {
                if (s[i] == -1) {
                    if (infer >= 0) throw py::value_error("reshape: only one dimension can be -1");
                    infer = (int)i;
                } else {
                    known *= s[i];
                }
            }
            if (infer >= 0) {
                if (known == 0 || a.size() % known) throw py::value_error("reshape: cannot infer -1");
                s[infer] = a.size() / known;
            }
            if (numel(s) != a.size())
                throw py::value_error("reshape: cannot view " + shape_str(a.shape) + " as " + shape_str(s));
            auto v = std::make_shared<DeviceArray>(a);
            v->shape = s;
            return v;
        }, "A view with another shape (same memory, same element count; one -1 allowed).")
        .def_property_readonly("shape", [](const DeviceArray& a) {
            py::tuple t(a.shape.size());
            for (size_t i = 0; i < a.shape.size(); ++i) t[i] = a.shape[i];
            return t;
        })
        .def_property_readonly("dtype", [](const DeviceArray& a) { return numpy_dtype(a.dtype); })
        .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.size(); })
        .def_property_readonly("size", &DeviceArray::size)
        .def_property_readonly("nbytes", &DeviceArray::nbytes)
        .def_property_readonly("ptr", [](const DeviceArray& a) { return (uint64_t) reinterpret_cast<uintptr_t>(a.ptr); })
        .def_property_readonly("device", [](const DeviceArray& a) { return a.device; })
        .def_property_readonly("readonly", [](const DeviceArray& a) { return a.readonly; })
        .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
        .def("__dlpack__", &to_dlpack, py::kw_only(), py::arg("stream") = py::none(),
             py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
             py::arg("copy") = py::none(),
             "DLPack capsule (zero-copy); the consumer's stream is ordered after pending work.")
        .def("__dlpack_device__", [](const DeviceArray& a) { return py::make_tuple(kDLCUDA, a.device); })
        .def("__len__", [](const DeviceArray& a) {
            if (a.shape.empty()) throw py::type_error("len() of a 0-d DeviceArray");
            return a.shape[0];
        })
        .def("__float__", [](const DeviceArray& a) {
            if (a.size() != 1) throw py::type_error("float(): only size-1 DeviceArrays convert");
            return to_numpy(a).attr("item")().cast<double>();
        })
        .def("__repr__", [](const DeviceArray& a) {
            return "DeviceArray(shape=" + shape_str(a.shape) + ", dtype=" + dtype_name(a.dtype) +
                   ", device=cuda:" + std::to_string(a.device) + ")";
        });

    // ---- conv (NHWC, RSCK)
    m.def("conv2d_forward", &conv_fwd, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
          py::arg("stride") = 1, py::arg("pad") = 0, py::arg("out") = py::none(),
          "y (N,P,Q,K) = conv(x (N,H,W,C), w (R,S,C,K)) + b (K,) or None. NHWC, RSCK.");
    m.def("conv2d_backward_data", &conv_bwd_data, py::arg("dy"), py::arg("w"), py::arg("H"),
          py::arg("W"), py::arg("stride") = 1, py::arg("pad") = 0, py::arg("out") = py::none(),
          "dx (N,H,W,C) from dy (N,P,Q,K) and w (R,S,C,K); H, W: input size.");
    m.def("conv2d_backward_weight", &conv_bwd_weight, py::arg("x"), py::arg("dy"), py::arg("R"),
          py::arg("S"), py::arg("stride") = 1, py::arg("pad") = 0, py::arg("with_bias") = true,
          py::arg("dw_out") = py::none(), py::arg("db_out") = py::none(),
          "(dw (R,S,C,K), db (K,) or None) from x (N,H,W,C) and dy (N,P,Q,K).");

    // ---- batch norm
    m.def("batch_norm_forward_train", &bn_fwd_train, py::arg("x"), py::arg("gamma"),
          py::arg("beta"), py::arg("running_mean"), py::arg("running_var"),
          py::arg("momentum") = 0.1, py::arg("eps") = 1e-5, py::arg("relu") = false,
          py::arg("out") = py::none(), py::arg("mean_out") = py::none(),
          py::arg("rstd_out") = py::none(),
          "Training batch norm over x (N,H,W,C) or (M,C): returns (y, mean (C,), rstd (C,)) and\n"
          "updates running_mean/running_var in place (unbiased variance). relu fuses max(y, 0).");
    m.def("batch_norm_forward_eval", &bn_fwd_eval, py::arg("x"), py::arg("gamma"), py::arg("beta"),
          py::arg("running_mean"), py::arg("running_var"), py::arg("eps") = 1e-5,
          py::arg("relu") = false, py::arg("out") = py::none(),
          "Eval batch norm with running stats over x (N,H,W,C) or (M,C); relu fuses max(y, 0).");
    m.def("batch_norm_backward", &bn_bwd, py::arg("dy"), py::arg("x"), py::arg("gamma"),
          py::arg("mean"), py::arg("rstd"), py::arg("y") = py::none(), py::arg("train") = true,
          py::arg("out") = py::none(), py::arg("dgamma_out") = py::none(),
          py::arg("dbeta_out") = py::none(),
          "Batch norm backward: (dx, dgamma, dbeta). y given: dy is masked by y > 0 (fused ReLU).\n"
          "train=False: mean/rstd are the running statistics (dx = dy * gamma * rstd).");

    // ---- elementwise and layout
    m.def("relu_forward", &relu_fwd, py::arg("x"), py::arg("out") = py::none(), "y = max(x, 0).");
    m.def("relu_backward", &relu_bwd, py::arg("dy"), py::arg("y"), py::arg("out") = py::none(),
          "dx = dy * (y > 0), y the forward output.");
    m.def("add_forward", [](const py::object& a, const py::object& b, const py::object& out) {
        return add_fwd(a, b, out, false);
    }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(), "y = a + b (same shapes).");
    m.def("add_relu_forward", [](const py::object& a, const py::object& b, const py::object& out) {
        return add_fwd(a, b, out, true);
    }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(), "y = max(a + b, 0).");
    m.def("add_relu_backward", &relu_bwd, py::arg("dy"), py::arg("y"), py::arg("out") = py::none(),
          "d = dy * (y > 0), the gradient of add_relu for both a and b.");
    m.def("nchw_to_nhwc", [](const py::object& x, const py::object& out) { return layout(x, out, true); },
          py::arg("x"), py::arg("out") = py::none(), "x (N,C,H,W) -> (N,H,W,C).");
    m.def("nhwc_to_nchw", [](const py::object& x, const py::object& out) { return layout(x, out, false); },
          py::arg("x"), py::arg("out") = py::none(), "x (N,H,W,C) -> (N,C,H,W).");

    // ---- pooling
    m.def("max_pool2d_forward", &max_pool_fwd, py::arg("x"), py::arg("k"), py::arg("stride"),
          py::arg("pad"), py::arg("out") = py::none(), py::arg("argmax_out") = py::none(),
          "Max pool, NHWC: x (N,H,W,C) -> (y (N,P,Q,C), argmax int32 (N,P,Q,C) = h*W+w of the\n"
          "first maximum in row-major window order). -inf padding; needs pad <= k//2.");
    m.def("max_pool2d_backward", &max_pool_bwd, py::arg("dy"), py::arg("argmax"), py::arg("H"),
          py::arg("W"), py::arg("k"), py::arg("stride"), py::arg("pad"), py::arg("out") = py::none(),
          "Max pool backward: dy (N,P,Q,C), argmax -> dx (N,H,W,C). Unlike the CPU version it\n"
          "needs the window (k, stride, pad): it gathers per input pixel (deterministic).");
    m.def("global_avg_pool_forward", &gap_fwd, py::arg("x"), py::arg("out") = py::none(),
          "Global average pool: x (N,H,W,C) -> y (N,C).");
    m.def("global_avg_pool_backward", &gap_bwd, py::arg("dy"), py::arg("H"), py::arg("W"),
          py::arg("out") = py::none(), "dy (N,C) -> dx (N,H,W,C) = dy / (H*W).");

    // ---- linear
    m.def("linear_forward", &linear_fwd, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
          py::arg("out") = py::none(), "x (N,F), w (O,F), b (O,) or None -> y (N,O) = x w^T + b.");
    m.def("linear_backward", &linear_bwd, py::arg("dy"), py::arg("x"), py::arg("w"),
          py::arg("need_dx") = true, py::arg("with_bias") = true, py::arg("dx_out") = py::none(),
          py::arg("dw_out") = py::none(), py::arg("db_out") = py::none(),
          "dy (N,O) -> (dx (N,F) or None, dw (O,F), db (O,) or None).");

    // ---- loss
    m.def("softmax_cross_entropy", &xent, py::arg("logits"), py::arg("labels"),
          py::arg("label_smoothing") = 0.0, py::arg("dlogits_out") = py::none(),
          py::arg("loss_out") = py::none(), py::arg("check_labels") = true,
          "logits (N,K), labels int32/int64 (N,) -> (loss: 0-d device float32, mean over the\n"
          "batch; dlogits (N,K) already / N). check_labels waits for the device and raises\n"
          "ValueError on a label outside [0,K); pass False inside CUDA graph capture (bad rows\n"
          "then give NaN).");

    // ---- optimizers (in place)
    m.def("sgd_step", &sgd, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"),
          py::arg("lr"), py::arg("momentum") = 0.0, py::arg("weight_decay") = 0.0,
          py::arg("nesterov") = false,
          "PyTorch SGD step in place; momentum_buf (zero-initialized) required iff momentum > 0.\n"
          "lr: a number, or a one-element float32 DeviceArray read at run time (CUDA graphs).");
    m.def("adam_step", &adam, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("step"), py::arg("lr"), py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
          py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("decoupled") = false,
          "Adam (decoupled=False) / AdamW step in place; step counts from 1. step (int64) and\n"
          "lr (float32) may be one-element DeviceArrays read at run time (CUDA graphs).");
}
