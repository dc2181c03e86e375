// checks.h: the one place where NumPy arrays become raw pointers. Every argument passes
// through require(), which checks dtype, C-contiguity, ndim, shape and (for outputs)
// writeability, and throws a ValueError/TypeError naming the argument.
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
// Same for float64 arrays (per-channel sums).
py::array_t<double> require_f64(const py::handle& obj, const char* name, const Dims& dims,
                                bool writable = false);
// Same for integer label/index arrays of the given NumPy dtype (int32 or int64).
py::array require_int(const py::handle& obj, const char* name, const Dims& dims,
                      bool writable = false);
// Allocates a fresh float32 output or checks a caller-supplied one (out=...).
py::array_t<float> output_f32(const py::object& out, const char* name, const Dims& dims);
// Integer-valued scalar range checks with a named error.
void require_range(int64_t v, const char* name, int64_t lo, int64_t hi);
void require_positive(double v, const char* name);

inline float* ptr(py::array_t<float>& a) { return a.mutable_data(); }
inline const float* cptr(const py::array_t<float>& a) { return a.data(); }

}  // namespace rc::py_checks
