// checks.cpp: argument validation for every binding (see checks.h).
#include "checks.h"

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
    if (writable && !a.writeable())
        throw py::value_error(std::string(name) + ": expected a writeable array (it is written in place)");
}

template <class T>
py::array_t<T> require_typed(const py::handle& obj, const char* name, const char* dtype,
                             const Dims& dims, bool writable) {
    py::array a = as_ndarray(obj, name, dtype);
    if (!a.dtype().equal(py::dtype::of<T>()))
        throw py::type_error(std::string(name) + ": expected dtype " + dtype + ", got " +
                             std::string(py::str(a.dtype())));
    check_layout(a, name, dims, writable);
    return py::reinterpret_borrow<py::array_t<T>>(a);
}

}  // namespace

py::array_t<float> require_f32(const py::handle& obj, const char* name, const Dims& dims,
                               bool writable) {
    return require_typed<float>(obj, name, "float32", dims, writable);
}

py::array_t<double> require_f64(const py::handle& obj, const char* name, const Dims& dims,
                                bool writable) {
    return require_typed<double>(obj, name, "float64", dims, writable);
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
    if (out.is_none()) {
        std::vector<py::ssize_t> shape(dims.begin(), dims.end());
        return py::array_t<float>(shape);
    }
    return require_f32(out, name, dims, /*writable=*/true);
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

}  // namespace rc::py_checks
