// device_array.cpp: availability, DeviceArray (allocation, host copies, pinned host memory,
// interop through __cuda_array_interface__ v3 and DLPack) and the _cuda argument checks.
#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>

#include "device_array.h"
#include "kernels.h"

#ifndef RESNET_CPP_CUDA_ARCHS
#define RESNET_CPP_CUDA_ARCHS "unknown"
#endif

namespace rc::cuda_bind {

using rc::py_checks::dims_str;

// ------------------------------------------------------------------ availability

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

void require_device() {
    const Availability& a = availability();
    if (!a.ok) throw std::runtime_error("CUDA is not available: " + a.why);
}

// ------------------------------------------------------------------ dtypes and shapes

const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "float32";
        case DType::i32: return "int32";
        default: return "int64";
    }
}
size_t dtype_size(DType t) { return t == DType::i64 ? 8 : 4; }

namespace {
const char* dtype_typestr(DType t) {
    switch (t) {
        case DType::f32: return "<f4";
        case DType::i32: return "<i4";
        default: return "<i8";
    }
}
}  // namespace

DType parse_dtype(const py::handle& obj, const char* name) {
    py::dtype d = py::dtype::from_args(py::reinterpret_borrow<py::object>(obj));
    if (d.equal(py::dtype::of<float>())) return DType::f32;
    if (d.equal(py::dtype::of<int32_t>())) return DType::i32;
    if (d.equal(py::dtype::of<int64_t>())) return DType::i64;
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

int64_t numel(const Dims& s) {
    int64_t n = 1;
    for (int64_t d : s) {
        if (d < 0) throw py::value_error("shape: negative dimension in " + dims_str(s));
        if (d && n > std::numeric_limits<int64_t>::max() / d)
            throw py::value_error("shape: too many elements in " + dims_str(s));
        n *= d;
    }
    return n;
}

namespace {

Dims shape_from(const py::handle& obj) {
    Dims s;
    if (py::isinstance<py::int_>(obj)) {
        s.push_back(obj.cast<int64_t>());
    } else {
        for (auto d : py::reinterpret_borrow<py::iterable>(obj)) s.push_back(d.cast<int64_t>());
    }
    numel(s);
    return s;
}

std::vector<std::shared_ptr<void>>* g_capture_keep = nullptr;

void keep_if_capturing(const ArrayPtr& a) {
    if (g_capture_keep) g_capture_keep->push_back(a->owner);
}

}  // namespace

void set_capture_keep(std::vector<std::shared_ptr<void>>* keep) { g_capture_keep = keep; }

namespace {

// The memory rule on the device: what cudaMemGetInfo reports free, plus the cached blocks
// the allocator gives back before it retries a failed cudaMalloc. Skipped while a CUDA graph
// is being captured (no query during capture; a failed cudaMalloc is still a MemoryError).
void require_device_memory(const char* name, const Dims& shape, size_t itemsize) {
    if (g_capture_keep) return;
    if (rc::py_checks::array_bytes(shape, itemsize) < rc::py_checks::kMemoryCheckAbove) return;
    size_t free_b = 0, total_b = 0;
    RC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    rc::py_checks::require_fits(name, shape, itemsize,
                                (double)free_b + (double)rc::cuda::cache_stats().cached_bytes,
                                "device memory");
}

}  // namespace

ArrayPtr new_array(const Dims& shape, DType dtype, const char* name) {
    require_device();
    require_device_memory(name, shape, dtype_size(dtype));
    auto a = std::make_shared<DeviceArray>();
    a->shape = shape;
    a->dtype = dtype;
    RC_CUDA_CHECK(cudaGetDevice(&a->device));
    std::shared_ptr<rc::cuda::DeviceBuffer> buf;
    try {
        buf = std::make_shared<rc::cuda::DeviceBuffer>(a->nbytes());
    } catch (const rc::cuda::OutOfMemory&) {
        rc::py_checks::raise_allocation_failed(name, shape, "device memory");
    }
    a->ptr = buf->data();
    a->owner = buf;
    keep_if_capturing(a);
    return a;
}

// ------------------------------------------------------------------ argument checks

ArrayPtr as_array(const py::handle& obj, const char* name) {
    if (obj.is_none() || !py::isinstance<DeviceArray>(obj))
        throw py::type_error(std::string(name) + ": expected a resnet_cpp._cuda.DeviceArray " +
                             "(use resnet_cpp.cuda.to_device), got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    return obj.cast<ArrayPtr>();
}

ArrayPtr require(const py::handle& obj, const char* name, DType t, const Dims& dims, bool writable) {
    ArrayPtr a = as_array(obj, name);
    rc::py_checks::check_dtype(name, a->dtype == t, dtype_name(t), dtype_name(a->dtype));
    rc::py_checks::check_array(name, {a->shape, true, !a->readonly}, dims, writable);
    if (a->size() > std::numeric_limits<int32_t>::max())
        throw py::value_error(std::string(name) + ": more than 2^31-1 elements is not supported");
    int dev = 0;
    RC_CUDA_CHECK(cudaGetDevice(&dev));
    if (a->device != dev)
        throw py::value_error(std::string(name) + ": array is on device " + std::to_string(a->device) +
                              ", the current device is " + std::to_string(dev));
    keep_if_capturing(a);
    return a;
}

ArrayPtr require_any(const py::handle& obj, const char* name) {
    ArrayPtr a = as_array(obj, name);
    return require_f32(obj, name, rc::py_checks::any_shape(name, a->shape.size()));
}

ArrayPtr output(const py::object& out, const char* name, const Dims& dims, DType t) {
    if (!out.is_none()) return require(out, name, t, dims, /*writable=*/true);
    require_device_memory(name, dims, dtype_size(t));  // first: dims may overflow int64
    if (numel(dims) > std::numeric_limits<int32_t>::max())
        throw py::value_error(std::string(name) + ": more than 2^31-1 elements is not supported");
    return new_array(dims, t, name);
}

void require_batch(const py::handle& obj, const char* name) {
    if (py::isinstance<DeviceArray>(obj)) {
        const Dims& s = obj.cast<ArrayPtr>()->shape;
        if (s.size() == 4) rc::py_checks::require_batch(name, s);
    }
}

// ------------------------------------------------------------------ streams

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

namespace {

// ------------------------------------------------------------------ host copies

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
        Dims st = shape_from(cai["strides"]);
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
        stream_wait(stream(), stream_from_int(cai["stream"].cast<int64_t>()));
    auto* keep = new py::object(obj);
    a->owner = std::shared_ptr<void>(keep, [](void* p) {
        py::gil_scoped_acquire gil;
        delete static_cast<py::object*>(p);
    });
    return a;
}

// A NumPy array of the device array's dtype and shape, C-contiguous (copied if it is not, and
// then never pinned).
py::array host_operand(const DeviceArray& a, const py::handle& obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a NumPy array, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    rc::py_checks::check_dtype(name, parse_dtype(arr.dtype(), name) == a.dtype, dtype_name(a.dtype),
                               py::str(arr.dtype()));
    Dims shape(arr.shape(), arr.shape() + arr.ndim());
    if (shape != a.shape)
        throw py::value_error(std::string(name) + ": expected shape " + dims_str(a.shape) +
                              ", got " + dims_str(shape));
    if (!(arr.flags() & py::array::c_style))
        arr = py::module_::import("numpy").attr("ascontiguousarray")(arr);
    return arr;
}

bool is_pinned(const void* p) {
    cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return attr.type == cudaMemoryTypeHost;
}

// One host<->device copy on `stream` (the module's stream when None). Blocking copies wait
// for the stream; non_blocking ones need pinned host memory and return at once: the host
// must not touch it until the stream has passed the copy.
void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const void* host,
          bool non_blocking, const py::object& stream_handle, const char* name) {
    if (non_blocking && !is_pinned(host))
        throw py::value_error(std::string(name) + ": non_blocking copies need pinned host memory "
                              "(resnet_cpp.cuda.pinned_empty)");
    const cudaStream_t s = stream_handle.is_none() ? stream() : stream_from_int(stream_handle.cast<int64_t>());
    if (!bytes) return;
    py::gil_scoped_release nogil;
    RC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    if (!non_blocking) rc::cuda::host_sync(s);
}

ArrayPtr from_numpy(const py::handle& obj) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error("from_numpy: expected a NumPy array, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    ArrayPtr a = new_array(Dims(arr.shape(), arr.shape() + arr.ndim()), parse_dtype(arr.dtype(), "array"),
                             "array");
    arr = host_operand(*a, arr, "array");
    copy(a->ptr, arr.data(), a->nbytes(), cudaMemcpyHostToDevice, arr.data(), false, py::none(), "array");
    return a;
}

py::array to_numpy(const DeviceArray& a) {
    py::array out(numpy_dtype(a.dtype), std::vector<py::ssize_t>(a.shape.begin(), a.shape.end()));
    copy(out.mutable_data(), a.ptr, a.nbytes(), cudaMemcpyDeviceToHost, out.data(), false,
         py::none(), "to_numpy");
    return out;
}

void copy_from_numpy(DeviceArray& a, const py::handle& src, bool non_blocking, const py::object& s) {
    py::array arr = host_operand(a, src, "src");
    if (a.readonly) throw py::value_error("copy_from_numpy: the device array is read-only");
    copy(a.ptr, arr.data(), a.nbytes(), cudaMemcpyHostToDevice, arr.data(), non_blocking, s, "src");
}

void copy_to_numpy(const DeviceArray& a, const py::handle& dst, bool non_blocking, const py::object& s) {
    py::array arr = host_operand(a, dst, "dst");
    if (!arr.is(dst) || !arr.writeable())
        throw py::value_error("dst: expected a writeable C-contiguous array (it is written in place)");
    copy(arr.mutable_data(), a.ptr, a.nbytes(), cudaMemcpyDeviceToHost, arr.data(), non_blocking,
         s, "dst");
}

// A NumPy array in page-locked host memory (cudaHostAlloc), freed with the array.
py::array pinned_empty(const py::object& shape, const py::object& dtype) {
    require_device();
    const DType t = parse_dtype(dtype);
    const Dims dims = shape_from(shape);
    void* p = nullptr;
    const size_t bytes = std::max<size_t>((size_t)numel(dims) * dtype_size(t), 1);
    RC_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
    py::capsule owner(p, [](void* q) {
        if (cudaFreeHost(q) != cudaSuccess) cudaGetLastError();
    });
    return py::array(numpy_dtype(t), std::vector<py::ssize_t>(dims.begin(), dims.end()), p, owner);
}

void fill(DeviceArray& a, const py::object& value) {
    if (a.readonly) throw py::value_error("fill_: the device array is read-only");
    uint64_t bits = 0;
    if (a.dtype == DType::f32) {
        const float v = value.cast<float>();
        uint32_t b;
        std::memcpy(&b, &v, 4);
        bits = b;
    } else {
        bits = (uint64_t)value.cast<int64_t>();
    }
    rc::cuda::fill(a.ptr, a.size(), (int)dtype_size(a.dtype), bits, stream());
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
    d["stream"] = stream_to_int(stream());
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
    Dims shape, strides;
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
    if (sv != -1) stream_wait(stream_from_int(sv), rc::cuda::current_stream());

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

ArrayPtr reshape(const DeviceArray& a, const py::args& args) {
    py::object spec = args.size() == 1 ? py::object(args[0]) : py::object(args);
    Dims s;
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
        throw py::value_error("reshape: cannot view " + dims_str(a.shape) + " as " + dims_str(s));
    auto v = std::make_shared<DeviceArray>(a);
    v->shape = s;
    return v;
}

}  // namespace
}  // namespace rc::cuda_bind

using namespace rc::cuda_bind;

void bind_device_array(py::module_& m) {
    py::class_<DeviceArray, ArrayPtr>(m, "DeviceArray",
        "A C-contiguous float32/int32/int64 array in device memory.\n"
        "DeviceArray(obj) wraps any object exposing __cuda_array_interface__ without copying.")
        .def(py::init(&from_cuda_array_interface), py::arg("obj"))
        .def_static("from_numpy", &from_numpy, py::arg("array"),
                    "Copy a NumPy float32/int32/int64 array to the device (waits for the copy).")
        .def_static("empty", [](const py::object& shape, const py::object& dtype) {
            return new_array(shape_from(shape), parse_dtype(dtype), "shape");
        }, py::arg("shape"), py::arg("dtype") = "float32", "Uninitialized device array.")
        .def_static("zeros", [](const py::object& shape, const py::object& dtype) {
            ArrayPtr a = new_array(shape_from(shape), parse_dtype(dtype), "shape");
            if (a->nbytes()) RC_CUDA_CHECK(cudaMemsetAsync(a->ptr, 0, a->nbytes(), stream()));
            return a;
        }, py::arg("shape"), py::arg("dtype") = "float32", "Zero-filled device array.")
        .def("to_numpy", &to_numpy, "Copy to a new NumPy array (waits for pending work).")
        .def("copy_from_numpy", &copy_from_numpy, py::arg("src"), py::arg("non_blocking") = false,
             py::arg("stream") = py::none(),
             "Overwrite with a host array of the same shape and dtype, on the module's stream or\n"
             "`stream` (a handle). Waits, unless non_blocking (src must then be pinned memory from\n"
             "pinned_empty, left untouched until the stream has passed the copy). With another\n"
             "stream, this array must have no pending work on the module's stream.")
        .def("copy_to_numpy", &copy_to_numpy, py::arg("dst"), py::arg("non_blocking") = false,
             py::arg("stream") = py::none(),
             "Copy into the host array dst (same shape and dtype), after the work queued on the\n"
             "stream. Waits, unless non_blocking (dst must then be pinned memory, read only after\n"
             "a synchronize).")
        .def("fill_", &fill, py::arg("value"),
             "Set every element to value (asynchronous, on the module's stream).")
        .def("zero_", [](DeviceArray& a) {
            if (a.readonly) throw py::value_error("zero_: the device array is read-only");
            if (a.nbytes()) RC_CUDA_CHECK(cudaMemsetAsync(a.ptr, 0, a.nbytes(), stream()));
        }, "Fill with zeros (asynchronous, on the module's stream).")
        .def("reshape", &reshape,
             "A view with another shape (same memory, same element count; one -1 allowed).")
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
            return "DeviceArray(shape=" + dims_str(a.shape) + ", dtype=" + dtype_name(a.dtype) +
                   ", device=cuda:" + std::to_string(a.device) + ")";
        });
    m.def("pinned_empty", &pinned_empty, py::arg("shape"), py::arg("dtype") = "float32",
          "An uninitialized NumPy array in pinned (page-locked) host memory: the source or\n"
          "destination of non_blocking copies.");
}
