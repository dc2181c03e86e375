// checks.h: the one place where NumPy arrays become raw pointers. Every argument passes
// through require(), which checks dtype, C-contiguity, alignment, ndim, shape and (for
// outputs) writeability, and throws a ValueError/TypeError naming the argument. The
// boundary rules below (overlap, values copied before the GIL is released, memory) apply to
// every binding as well.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace rc::py_checks {
namespace py = pybind11;

// Shape pattern: a non-negative entry must match exactly; -1 accepts any size >= 1.
using Dims = std::vector<int64_t>;

std::string shape_str(const py::array& a);
std::string dims_str(const Dims& d);

// Checks a float32 array; returns it (same object, no copy) so callers can take pointers.
py::array_t<float> require_f32(const py::handle& obj, const char* name, const Dims& dims,
                               bool writable = false);
// Same for integer label/index arrays of the given NumPy dtype (int32 or int64).
py::array require_int(const py::handle& obj, const char* name, const Dims& dims,
                      bool writable = false);
// Allocates a fresh float32 output or checks a caller-supplied one (out=...).
py::array_t<float> output_f32(const py::object& out, const char* name, const Dims& dims);
// A fresh C-contiguous array, after require_memory.
py::array new_array(const char* name, const Dims& dims, const py::dtype& dtype);
// Integer-valued scalar range checks with a named error.
void require_range(int64_t v, const char* name, int64_t lo, int64_t hi);
void require_positive(double v, const char* name);

// ---- Boundary rules ----------------------------------------------------------------------

// A kernel that writes `out` while it reads `in` gives silently wrong results when they
// share memory. require_disjoint refuses any shared byte; require_disjoint_or_same also
// admits `out` being exactly `in` (same start, same size), for kernels that read each
// element before they write it (elementwise ops, in place). Both raise a ValueError naming
// both arguments. The arrays must have passed require_*: C-contiguous, so each one's memory
// is the byte range [data, data + nbytes). An empty array (an absent optional) overlaps
// nothing.
void require_disjoint(const py::array& out, const char* out_name, const py::array& in,
                      const char* in_name);
// The same against each input of a list: require_disjoint(y, "out", {{x, "x"}, {w, "w"}}).
struct Named {
    const py::array& a;
    const char* name;
};
void require_disjoint(const py::array& out, const char* out_name,
                      std::initializer_list<Named> ins);
void require_disjoint_or_same(const py::array& out, const char* out_name, const py::array& in,
                              const char* in_name);

// Values a kernel uses as indices (labels): obj must be an int32 or int64 (n,) array; its
// values are copied while the GIL is held and checked in the copy to lie in [0, hi), else a
// ValueError naming name[i]. The kernel reads the copy: another Python thread may change the
// array as soon as the GIL is released, but not the values that were checked.
std::vector<int64_t> copy_indices(const py::handle& obj, const char* name, int64_t n,
                                  int64_t hi, const char* hi_name);

// A new array of this shape must fit in the memory the process can still get (RAM and swap
// available, and its cgroup's limit): else a MemoryError naming the array and both sizes,
// raised before anything is allocated (a huge request would otherwise swap or meet the OOM
// killer, or overflow the byte count).
void require_memory(const char* name, const Dims& dims, size_t itemsize);

inline float* ptr(py::array_t<float>& a) { return a.mutable_data(); }
inline const float* cptr(const py::array_t<float>& a) { return a.data(); }

}  // namespace rc::py_checks
