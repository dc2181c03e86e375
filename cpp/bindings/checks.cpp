// checks.cpp: argument validation for every binding (see checks.h).
#include "checks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace rc::py_checks {

std::string dims_str(const Dims& d) {
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

std::string shape_str(const py::array& a) {
    Dims d(a.shape(), a.shape() + a.ndim());
    return dims_str(d);
}

namespace {

py::array as_ndarray(const py::handle& obj, const char* name, const char* want) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a NumPy " + want + " array, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(obj);
}

void check_layout(const py::array& a, const char* name, const Dims& dims, bool writable) {
    if (a.ndim() != (py::ssize_t)dims.size())
        throw py::value_error(std::string(name) + ": expected " + std::to_string(dims.size()) +
                              "-d array of shape " + dims_str(dims) + ", got shape " + shape_str(a));
    for (size_t i = 0; i < dims.size(); ++i) {
        bool ok = dims[i] >= 0 ? a.shape(i) == dims[i] : a.shape(i) >= 1;
        if (!ok)
            throw py::value_error(std::string(name) + ": expected shape " + dims_str(dims) +
                                  " (* = any size >= 1), got " + shape_str(a));
    }
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) +
                              ": expected a C-contiguous array (use np.ascontiguousarray)");
    // A view at an odd byte offset: kernels dereference typed pointers (undefined behaviour).
    if (reinterpret_cast<uintptr_t>(a.data()) % a.itemsize() != 0)
        throw py::value_error(std::string(name) + ": expected an aligned array (its data starts "
                              "between two elements; np.require(a, requirements='A') copies it)");
    if (writable && !a.writeable())
        throw py::value_error(std::string(name) + ": expected a writeable array (it is written in place)");
}

}  // namespace

py::array_t<float> require_f32(const py::handle& obj, const char* name, const Dims& dims,
                               bool writable) {
    py::array a = as_ndarray(obj, name, "float32");
    if (!a.dtype().equal(py::dtype::of<float>()))
        throw py::type_error(std::string(name) + ": expected dtype float32, got " +
                             std::string(py::str(a.dtype())));
    check_layout(a, name, dims, writable);
    return py::reinterpret_borrow<py::array_t<float>>(a);
}

py::array require_int(const py::handle& obj, const char* name, const Dims& dims, bool writable) {
    py::array a = as_ndarray(obj, name, "int32 or int64");
    if (!(a.dtype().equal(py::dtype::of<int32_t>()) || a.dtype().equal(py::dtype::of<int64_t>())))
        throw py::type_error(std::string(name) + ": expected dtype int32 or int64, got " +
                             std::string(py::str(a.dtype())));
    check_layout(a, name, dims, writable);
    return a;
}

py::array_t<float> output_f32(const py::object& out, const char* name, const Dims& dims) {
    if (out.is_none())
        return py::reinterpret_borrow<py::array_t<float>>(
            new_array(name, dims, py::dtype::of<float>()));
    return require_f32(out, name, dims, /*writable=*/true);
}

py::array new_array(const char* name, const Dims& dims, const py::dtype& dtype) {
    require_memory(name, dims, (size_t)dtype.itemsize());
    try {
        return py::array(dtype, std::vector<py::ssize_t>(dims.begin(), dims.end()));
    } catch (py::error_already_set& e) {
        if (!e.matches(PyExc_MemoryError)) throw;
        PyErr_SetString(PyExc_MemoryError, (std::string(name) + ": allocating an array of shape " +
                                            dims_str(dims) + " failed (out of memory)").c_str());
        throw py::error_already_set();
    }
}

void require_range(int64_t v, const char* name, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        throw py::value_error(std::string(name) + ": expected an integer in [" + std::to_string(lo) +
                              ", " + std::to_string(hi) + "], got " + std::to_string(v));
}

void require_positive(double v, const char* name) {
    if (!(v > 0))
        throw py::value_error(std::string(name) + ": expected a positive number, got " + std::to_string(v));
}

// ---- Boundary rules --------------------------------------------------------------------------

namespace {

bool overlaps(const py::array& a, const py::array& b) {
    if (a.nbytes() == 0 || b.nbytes() == 0) return false;
    const auto a0 = reinterpret_cast<uintptr_t>(a.data());
    const auto b0 = reinterpret_cast<uintptr_t>(b.data());
    return a0 < b0 + (uintptr_t)b.nbytes() && b0 < a0 + (uintptr_t)a.nbytes();
}

}  // namespace

void require_disjoint(const py::array& out, const char* out_name, const py::array& in,
                      const char* in_name) {
    if (overlaps(out, in))
        throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name +
                              " (the result would be wrong); pass a separate array");
}

void require_disjoint(const py::array& out, const char* out_name,
                      std::initializer_list<Named> ins) {
    for (const Named& in : ins) require_disjoint(out, out_name, in.a, in.name);
}

void require_disjoint_or_same(const py::array& out, const char* out_name, const py::array& in,
                              const char* in_name) {
    if (overlaps(out, in) && !(out.data() == in.data() && out.nbytes() == in.nbytes()))
        throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name +
                              " unless it is " + in_name + " itself (a shifted or partial view "
                              "would give wrong results); pass " + in_name +
                              " to work in place, or a separate array");
}

std::vector<int64_t> copy_indices(const py::handle& obj, const char* name, int64_t n,
                                  int64_t hi, const char* hi_name) {
    py::array a = require_int(obj, name, {n});
    std::vector<int64_t> v((size_t)n);
    if (a.dtype().equal(py::dtype::of<int32_t>())) {
        const auto* p = static_cast<const int32_t*>(a.data());
        std::copy(p, p + n, v.begin());
    } else {
        std::memcpy(v.data(), a.data(), (size_t)n * sizeof(int64_t));
    }
    for (int64_t i = 0; i < n; ++i)
        if (v[i] < 0 || v[i] >= hi)
            throw py::value_error(std::string(name) + ": " + name + "[" + std::to_string(i) +
                                  "] = " + std::to_string(v[i]) + " is outside [0, " + hi_name +
                                  ") = [0, " + std::to_string(hi) + ")");
    return v;
}

namespace {

// The first number in a file (cgroup limits, /proc/meminfo lines), or -1 if there is none
// ("max": no limit) or the file cannot be read.
double number_in(const char* path, const char* key = nullptr) {
    std::ifstream f(path);
    std::string word;
    if (key) {  // "Key:   123 kB" lines
        while (f >> word && word != key) {}
    }
    double v;
    return (f >> v) ? v : -1.0;
}

// Bytes this process can still get: MemAvailable + SwapFree, within its cgroup's limit (v2,
// else v1). Infinity when none of these files can be read (not Linux).
double available_memory() {
    double avail = std::numeric_limits<double>::infinity();
    const double mem = number_in("/proc/meminfo", "MemAvailable:");
    if (mem >= 0) avail = 1024.0 * (mem + std::max(0.0, number_in("/proc/meminfo", "SwapFree:")));
    for (auto [limit, usage] :
         {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
          std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
        const double l = number_in(limit), u = number_in(usage);
        if (l >= 0 && u >= 0) {
            avail = std::min(avail, std::max(0.0, l - u));
            break;
        }
    }
    return avail;
}

std::string human_bytes(double b) {
    const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    for (; b >= 1024.0 && u < 6; ++u) b /= 1024.0;
    std::ostringstream s;
    s.precision(u ? 1 : 0);
    s << std::fixed << b << " " << units[u];
    return s.str();
}

}  // namespace

void require_memory(const char* name, const Dims& dims, size_t itemsize) {
    // In double: exact below 2^53 bytes, and no overflow for the absurd sizes past 2^63.
    double bytes = (double)itemsize;
    for (int64_t d : dims) bytes *= (double)d;
    constexpr double kCheckAbove = 64.0 * (1 << 20);  // smaller ones skip reading /proc
    if (bytes < kCheckAbove) return;
    const double avail = available_memory();
    if (bytes <= avail && bytes < 0x1p63) return;
    PyErr_SetString(PyExc_MemoryError,
                    (std::string(name) + ": an array of shape " + dims_str(dims) + " needs " +
                     human_bytes(bytes) + ", more than the " +
                     (std::isinf(avail) ? std::string("largest size an array can have")
                                        : human_bytes(avail) + " of memory available"))
                        .c_str());
    throw py::error_already_set();
}

}  // namespace rc::py_checks
