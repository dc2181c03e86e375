// device_array.h: what every _cuda bindings file shares: whether CUDA is usable, the
// DeviceArray (a C-contiguous array in device memory) and its argument checks. The checks
// end in the same checker as _core's (cpp/bindings/checks.h), so a bad argument raises the
// same TypeError/ValueError, naming it, on both devices. Each op family's bindings live in
// their own file, mirroring cpp/bindings/; module.cpp assembles the module.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "cuda_common.cuh"

namespace rc::cuda_bind {
namespace py = pybind11;
using rc::py_checks::Dims;

// ------------------------------------------------------------------ availability

struct Availability {
    bool ok = false;
    std::string why;  // empty when ok
    int device = 0;
};
// Probed once: driver present, a device present, and this build's kernels run on it.
const Availability& availability();
// Raises RuntimeError with the reason when CUDA cannot be used.
void require_device();

// ------------------------------------------------------------------ DeviceArray

enum class DType { f32, i32, i64 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);
DType parse_dtype(const py::handle& obj, const char* name = "dtype");
py::dtype numpy_dtype(DType t);
int64_t numel(const Dims& s);

// A C-contiguous device array. `owner` keeps the memory alive: a DeviceBuffer for arrays
// allocated here, or the foreign Python object for arrays imported through
// __cuda_array_interface__.
struct DeviceArray {
    std::shared_ptr<void> owner;
    void* ptr = nullptr;
    Dims shape;
    DType dtype = DType::f32;
    bool readonly = false;
    int device = 0;

    int64_t size() const { return numel(shape); }
    size_t nbytes() const { return (size_t)size() * dtype_size(dtype); }
    float* f32() const { return static_cast<float*>(ptr); }
};
using ArrayPtr = std::shared_ptr<DeviceArray>;

// A new (uninitialized) array from the caching allocator. Larger than the device memory
// available (free, plus the allocator's cached blocks it would give back), or failing to
// allocate after the cache was emptied: a MemoryError naming it (`name`), raised before
// anything is allocated in the first case.
ArrayPtr new_array(const Dims& shape, DType dtype, const char* name = "array");

// While a CUDA graph is being captured, every array an op touches is kept alive by the graph
// (its memory is baked into the replays); the graph sets the list (null when not capturing).
void set_capture_keep(std::vector<std::shared_ptr<void>>* keep);

// ------------------------------------------------------------------ argument checks

// TypeError unless obj is a DeviceArray (a NumPy array gets the hint to move it).
ArrayPtr as_array(const py::handle& obj, const char* name);
// dtype, then shape/writeability through the shared checker, then size (kernels index with
// int) and device; errors name the argument.
ArrayPtr require(const py::handle& obj, const char* name, DType t, const Dims& dims,
                 bool writable = false);
inline ArrayPtr require_f32(const py::handle& obj, const char* name, const Dims& dims,
                            bool writable = false) {
    return require(obj, name, DType::f32, dims, writable);
}
// Any-shape float32 array with ndim >= 1 and no empty dimension.
ArrayPtr require_any(const py::handle& obj, const char* name);
// A fresh output (new_array; also refused past the kernels' 2^31-1 elements, as a given one
// is), or the caller's `out` checked (dtype, shape, writeable).
ArrayPtr output(const py::object& out, const char* name, const Dims& dims, DType t = DType::f32);
// 4-d activation whose batch is empty: the shared "empty batch" error.
void require_batch(const py::handle& obj, const char* name);
// The overlap rules: the shared checker's, on device arrays (an ArrayPtr converts to a Span;
// a null one, an absent optional, overlaps nothing).
using rc::py_checks::require_disjoint;
using rc::py_checks::require_disjoint_or_same;
inline const Dims& dims_of(const DeviceArray& a) { return a.shape; }
inline cudaStream_t stream() { return rc::cuda::current_stream(); }

// ------------------------------------------------------------------ streams

// Stream value of the interop protocols: 1 = legacy default stream, 2 = per-thread default.
cudaStream_t stream_from_int(int64_t v);
int64_t stream_to_int(cudaStream_t s);
// Orders `consumer` after all work queued so far on `producer` (no host wait).
void stream_wait(cudaStream_t consumer, cudaStream_t producer);

}  // namespace rc::cuda_bind

// Per-family registration, one file each (cpp/cuda/bindings/<family>.cpp).
void bind_device_array(pybind11::module_& m);
void bind_runtime(pybind11::module_& m);
void bind_conv(pybind11::module_& m);
void bind_batchnorm(pybind11::module_& m);
void bind_eltwise(pybind11::module_& m);
void bind_pool(pybind11::module_& m);
void bind_linear(pybind11::module_& m);
void bind_loss(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
