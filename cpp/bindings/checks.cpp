// checks.cpp: argument validation for every binding of both modules (see checks.h).
#include "checks.h"

#include <algorithm>
#include <cfloat>
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

// ------------------------------------------------------------------ the shared core

void check_array(const char* name, const ArrayInfo& a, const Dims& dims, bool writable) {
    if (a.shape.size() != dims.size())
        throw py::value_error(std::string(name) + ": expected " + std::to_string(dims.size()) +
                              "-d array of shape " + dims_str(dims) + ", got shape " +
                              dims_str(a.shape));
    for (size_t i = 0; i < dims.size(); ++i) {
        bool ok = dims[i] >= 0 ? a.shape[i] == dims[i] : a.shape[i] >= 1;
        if (!ok)
            throw py::value_error(std::string(name) + ": expected shape " + dims_str(dims) +
                                  " (* = any size >= 1), got " + dims_str(a.shape));
    }
    if (!a.c_contiguous)
        throw py::value_error(std::string(name) +
                              ": expected a C-contiguous array (use np.ascontiguousarray)");
    if (writable && !a.writeable)
        throw py::value_error(std::string(name) + ": expected a writeable array (it is written in place)");
}

void check_dtype(const char* name, bool ok, const char* want, const std::string& got) {
    if (!ok) throw py::type_error(std::string(name) + ": expected dtype " + want + ", got " + got);
}

Dims any_shape(const char* name, size_t ndim) {
    if (ndim == 0)
        throw py::value_error(std::string(name) + ": expected an array with ndim >= 1, got a 0-d array");
    return Dims(ndim, -1);
}

// ------------------------------------------------------------------ NumPy arrays (_core)

namespace {

py::array as_ndarray(const py::handle& obj, const char* name, const char* want) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a NumPy " + want + " array, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(obj);
}

void check_layout(const py::array& a, const char* name, const Dims& dims, bool writable) {
    check_array(name, {Dims(a.shape(), a.shape() + a.ndim()), (a.flags() & py::array::c_style) != 0,
                       a.writeable()},
                dims, writable);
    // A view at an odd byte offset: kernels dereference typed pointers (undefined behaviour).
    if (reinterpret_cast<uintptr_t>(a.data()) % a.itemsize() != 0)
        throw py::value_error(std::string(name) + ": expected an aligned array (its data starts "
                              "between two elements; np.require(a, requirements='A') copies it)");
}

template <class T>
py::array_t<T> require_typed(const py::handle& obj, const char* name, const char* dtype,
                             const Dims& dims, bool writable) {
    py::array a = as_ndarray(obj, name, dtype);
    check_dtype(name, a.dtype().equal(py::dtype::of<T>()), dtype, py::str(a.dtype()));
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
    check_dtype(name,
                a.dtype().equal(py::dtype::of<int32_t>()) || a.dtype().equal(py::dtype::of<int64_t>()),
                "int32 or int64", py::str(a.dtype()));
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
        raise_allocation_failed(name, dims, "memory");
    }
}

// ------------------------------------------------------------------ scalars

void require_range(int64_t v, const char* name, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        throw py::value_error(std::string(name) + ": expected an integer in [" + std::to_string(lo) +
                              ", " + std::to_string(hi) + "], got " + std::to_string(v));
}

void require_positive(double v, const char* name) {
    if (!(v > 0))
        throw py::value_error(std::string(name) + ": expected a positive number, got " + std::to_string(v));
}

void require_unit_interval(double v, const char* name) {
    if (!(v >= 0.0 && v <= 1.0))
        throw py::value_error(std::string(name) + ": expected a number in [0, 1], got " + std::to_string(v));
}

void require_unit(double v, const char* name) {
    if (!(v >= 0.0 && v < 1.0))
        throw py::value_error(std::string(name) + ": expected a number in [0, 1), got " + std::to_string(v));
}

// The kernels compute in float32: a value past FLT_MAX would become inf there.
void require_finite_nonneg(double v, const char* name) {
    if (!(v >= 0.0 && v <= FLT_MAX)) {
        std::ostringstream got;
        got << v;
        throw py::value_error(std::string(name) + ": expected a number >= 0, finite in float32 "
                              "(<= 3.4e38), got " + got.str());
    }
}

void require_eps(double eps) {
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite positive number, got " + std::to_string(eps));
}

void require_step(double step) {
    if (!(step >= 1.0 && step == std::floor(step) && step <= 9.0e15))
        throw py::value_error("step: expected an integer >= 1, got " + std::to_string(step));
}

double require_number(const py::handle& obj, const char* name, const char* dtype) {
    if (!PyNumber_Check(obj.ptr()) || py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a number or a one-element " + dtype +
                             " array, got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
    return obj.cast<double>();
}

void require_one_value(const char* name, const Dims& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (n != 1)
        throw py::value_error(std::string(name) + ": an array must hold one value, got shape " +
                              dims_str(shape));
}

void require_int_step(const py::handle& step) {
    if (!py::isinstance<py::int_>(step) || py::isinstance<py::bool_>(step))
        throw py::type_error("step: expected an int or a one-element int64 array");
}

// ------------------------------------------------------------------ op shape rules

void require_batch(const char* name, const Dims& shape) {
    if (!shape.empty() && shape[0] == 0)
        throw py::value_error(std::string(name) + ": empty batch (N = 0)");
}

rc::ConvShape checked_conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                                 int64_t R, int64_t S, int64_t stride, int64_t pad) {
    // Every size first, before any arithmetic on them (impl_name takes them as numbers).
    constexpr int64_t kMaxSize = int64_t(1) << 30, kMaxKernel = 1 << 16;
    require_range(H, "H", 1, kMaxSize);
    require_range(W, "W", 1, kMaxSize);
    require_range(C, "C", 1, kMaxSize);
    require_range(K, "K", 1, kMaxSize);
    require_range(R, "R", 1, kMaxKernel);
    require_range(S, "S", 1, kMaxKernel);
    require_range(stride, "stride", 1, 1 << 20);
    require_range(pad, "pad", 0, std::min(R, S) - 1);
    if (N < 1) throw py::value_error("x: empty batch (N = 0)");
    rc::ConvShape s = rc::make_conv_shape(N, H, W, C, K, R, S, stride, pad);
    if (H + 2 * pad < R || W + 2 * pad < S || s.P < 1 || s.Q < 1)
        throw py::value_error("output size < 1: input " + std::to_string(H) + "x" +
                              std::to_string(W) + " with kernel " + std::to_string(R) + "x" +
                              std::to_string(S) + ", pad " + std::to_string(pad));
    return s;
}

namespace {
constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();

void check_pool_window(int64_t H, int64_t W, int64_t k, int64_t stride, int64_t pad,
                       const char* hw_name) {
    require_range(k, "k", 1, 1 << 16);
    require_range(stride, "stride", 1, 1 << 16);
    require_range(pad, "pad", 0, k / 2);
    if (H * W > kMaxI32)
        throw py::value_error(std::string(hw_name) + ": H*W must fit in int32 (argmax is int32)");
    if (H + 2 * pad < k || W + 2 * pad < k)
        throw py::value_error("k: window " + std::to_string(k) + " is larger than the padded input " +
                              std::to_string(H + 2 * pad) + "x" + std::to_string(W + 2 * pad));
}
}  // namespace

rc::PoolShape checked_pool_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k,
                                 int64_t stride, int64_t pad) {
    check_pool_window(H, W, k, stride, pad, "x");
    return rc::make_pool_shape(N, H, W, C, k, stride, pad);
}

rc::PoolShape checked_pool_backward_shape(const Dims& dy, int64_t H, int64_t W, int64_t k,
                                          int64_t stride, int64_t pad) {
    require_range(H, "H", 1, kMaxI32);
    require_range(W, "W", 1, kMaxI32);
    check_pool_window(H, W, k, stride, pad, "H");
    rc::PoolShape s = rc::make_pool_shape(dy[0], H, W, dy[3], k, stride, pad);
    if (s.P != dy[1] || s.Q != dy[2])
        throw py::value_error("dy: expected shape " + dims_str({s.N, s.P, s.Q, s.C}) + " for a " +
                              std::to_string(H) + "x" + std::to_string(W) + " input with k=" +
                              std::to_string(k) + ", stride=" + std::to_string(stride) + ", pad=" +
                              std::to_string(pad) + ", got " + dims_str(dy));
    return s;
}

void require_bn_batch(int64_t M, const Dims& x_shape) {
    if (M < 2)
        throw py::value_error("x: training batch norm needs more than one value per channel "
                              "(N*H*W > 1), got shape " + dims_str(x_shape));
}

Dims gap_backward_dims(const Dims& dy, int64_t H, int64_t W) {
    require_range(H, "H", 1, kMaxI32);
    require_range(W, "W", 1, kMaxI32);
    return {dy[0], H, W, dy[1]};
}

Dims shortcut_a_out_dims(const Dims& x, int64_t channels_out, int64_t stride) {
    require_range(stride, "stride", 1, kMaxI32);
    require_range(channels_out, "channels_out", x[3], kMaxI32);
    return {x[0], (x[1] - 1) / stride + 1, (x[2] - 1) / stride + 1, channels_out};
}

std::pair<Dims, Dims> shortcut_a_backward_dims(const Dims& dy, int64_t channels_in, int64_t H,
                                               int64_t W, int64_t stride) {
    require_range(stride, "stride", 1, kMaxI32);
    require_range(channels_in, "channels_in", 1, dy[3]);
    require_range(H, "H", 1, kMaxI32);
    require_range(W, "W", 1, kMaxI32);
    return {{dy[0], (H - 1) / stride + 1, (W - 1) / stride + 1, dy[3]},
            {dy[0], H, W, channels_in}};
}

// ---- Boundary rules --------------------------------------------------------------------------

namespace {

bool overlaps(Span a, Span b) {
    if (a.nbytes == 0 || b.nbytes == 0) return false;
    const auto a0 = reinterpret_cast<uintptr_t>(a.data);
    const auto b0 = reinterpret_cast<uintptr_t>(b.data);
    return a0 < b0 + b.nbytes && b0 < a0 + a.nbytes;
}

}  // namespace

void require_disjoint(Span out, const char* out_name, Span in, const char* in_name) {
    if (overlaps(out, in))
        throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name +
                              " (the result would be wrong); pass a separate array");
}

void require_disjoint(Span out, const char* out_name, std::initializer_list<Named> ins) {
    for (const Named& in : ins) require_disjoint(out, out_name, in.a, in.name);
}

void require_disjoint_or_same(Span out, const char* out_name, Span in, const char* in_name) {
    if (overlaps(out, in) && !(out.data == in.data && out.nbytes == in.nbytes))
        throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name +
                              " unless it is " + in_name + " itself (a shifted or partial view "
                              "would give wrong results); pass " + in_name +
                              " to work in place, or a separate array");
}

void require_bn_forward_disjoint(Span y, Span x, Span residual, Span gamma, Span beta, Span rm,
                                 Span rv, bool training, Span mean, Span rstd) {
    require_disjoint_or_same(y, "out", x, "x");
    require_disjoint_or_same(y, "out", residual, "residual");
    require_disjoint(y, "out", {{gamma, "gamma"}, {beta, "beta"}, {rm, "running_mean"},
                                {rv, "running_var"}});
    if (training) {
        require_disjoint(rm, "running_mean", {{x, "x"}, {residual, "residual"}, {gamma, "gamma"},
                                              {beta, "beta"}, {rv, "running_var"}});
        require_disjoint(rv, "running_var", {{x, "x"}, {residual, "residual"}, {gamma, "gamma"},
                                             {beta, "beta"}});
    }
    for (auto [o, name] : {std::pair{mean, "mean_out"}, std::pair{rstd, "rstd_out"}})
        require_disjoint(o, name, {{x, "x"}, {residual, "residual"}, {y, "out"}, {gamma, "gamma"},
                                   {beta, "beta"}, {rm, "running_mean"}, {rv, "running_var"}});
    require_disjoint(mean, "mean_out", rstd, "rstd_out");
}

void require_bn_backward_disjoint(Span dx, Span dy, Span x, Span add, Span gamma, Span mean,
                                  Span rstd, Span beta, Span dgamma, Span dbeta) {
    require_disjoint_or_same(dx, "out", dy, "dy");
    require_disjoint_or_same(dx, "out", x, "x");
    require_disjoint(dx, "out", {{add, "add"}, {gamma, "gamma"}, {mean, "mean"}, {rstd, "rstd"},
                                 {beta, "beta"}});
    for (auto [o, name] : {std::pair{dgamma, "dgamma_out"}, std::pair{dbeta, "dbeta_out"}})
        require_disjoint(o, name, {{dy, "dy"}, {x, "x"}, {dx, "out"}, {add, "add"},
                                   {gamma, "gamma"}, {mean, "mean"}, {rstd, "rstd"},
                                   {beta, "beta"}});
    require_disjoint(dgamma, "dgamma_out", dbeta, "dbeta_out");
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
    for (int64_t i = 0; i < n && hi >= 0; ++i)
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

double array_bytes(const Dims& dims, size_t itemsize) {
    // In double: exact below 2^53 bytes, and no overflow for the absurd sizes past 2^63.
    double bytes = (double)itemsize;
    for (int64_t d : dims) bytes *= (double)d;
    return bytes;
}

void require_fits(const char* name, const Dims& dims, size_t itemsize, double available,
                  const char* what) {
    const double bytes = array_bytes(dims, itemsize);
    if (bytes <= available && bytes < 0x1p63) return;
    PyErr_SetString(PyExc_MemoryError,
                    (std::string(name) + ": an array of shape " + dims_str(dims) + " needs " +
                     human_bytes(bytes) + ", more than the " +
                     (std::isinf(available) ? std::string("largest size an array can have")
                                            : human_bytes(available) + " of " + what + " available"))
                        .c_str());
    throw py::error_already_set();
}

void raise_allocation_failed(const char* name, const Dims& dims, const char* what) {
    PyErr_SetString(PyExc_MemoryError, (std::string(name) + ": allocating an array of shape " +
                                        dims_str(dims) + " failed (out of " + what + ")").c_str());
    throw py::error_already_set();
}

void require_memory(const char* name, const Dims& dims, size_t itemsize) {
    if (array_bytes(dims, itemsize) < kMemoryCheckAbove) return;  // skips reading /proc
    require_fits(name, dims, itemsize, available_memory(), "memory");
}

}  // namespace rc::py_checks
