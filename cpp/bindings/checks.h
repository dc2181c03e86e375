// checks.h: the argument checks of every op, one header compiled into both modules: _core
// (NumPy arrays) and _cuda (DeviceArrays, cpp/cuda/bindings/device_array.h). So an op
// rejects the same bad input with the same TypeError/ValueError, naming the argument, on
// the CPU and on the GPU.
//  - check_array(): the module-neutral core every array check ends in (ndim, shape
//    pattern, C-contiguity, writeability). require_f32()/require_int() below feed it NumPy
//    arrays; the _cuda module feeds it DeviceArrays.
//  - Scalar checks, and the shape rules of the op families (conv, pool, batch norm,
//    shortcut A) that both modules' bindings call.
//  - Boundary rules (overlap, values copied before the GIL is released, memory) that every
//    binding applies as well.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#include "pool.h"

namespace rc::py_checks {
namespace py = pybind11;

// Shape pattern: a non-negative entry must match exactly; -1 accepts any size >= 1.
using Dims = std::vector<int64_t>;

std::string shape_str(const py::array& a);
std::string dims_str(const Dims& d);

// ------------------------------------------------------------------ the shared core

// What the checks need to know about an array, whichever module holds it.
struct ArrayInfo {
    Dims shape;
    bool c_contiguous;
    bool writeable;
};

// ndim and shape against the pattern, then C-contiguity, then (if writable) writeability;
// ValueError naming the argument on the first failure.
void check_array(const char* name, const ArrayInfo& a, const Dims& dims, bool writable);
// TypeError "name: expected dtype <want>, got <got>" unless ok.
void check_dtype(const char* name, bool ok, const char* want, const std::string& got);
// The pattern for an any-shape array (every dimension >= 1) of ndim `ndim`; a 0-d array
// is rejected.
Dims any_shape(const char* name, size_t ndim);

// ------------------------------------------------------------------ NumPy arrays (_core)

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
// A fresh C-contiguous array, after require_memory.
py::array new_array(const char* name, const Dims& dims, const py::dtype& dtype);

// ---- Boundary rules ----------------------------------------------------------------------

// The memory of a checked (C-contiguous) array, whichever module holds it: the byte range
// [data, data + nbytes), host or device addresses. Made implicitly from a NumPy array (_core)
// or from a shared pointer to anything with `ptr` and `nbytes()` (a _cuda ArrayPtr, see
// cpp/cuda/bindings/device_array.h); a default Span, an empty array or a null pointer (an
// absent optional) overlaps nothing.
struct Span {
    const void* data = nullptr;
    size_t nbytes = 0;
    Span() = default;
    Span(const py::array& a) : data(a.data()), nbytes((size_t)a.nbytes()) {}
    template <class T>
    Span(const std::shared_ptr<T>& a) : data(a ? a->ptr : nullptr), nbytes(a ? a->nbytes() : 0) {}
};

// A kernel that writes `out` while it reads `in` gives silently wrong results when they
// share memory. require_disjoint refuses any shared byte; require_disjoint_or_same also
// admits `out` being exactly `in` (same start, same size), for kernels that read each
// element before they write it (elementwise ops, in place). Both raise a ValueError naming
// both arguments. Both modules' bindings call them (NumPy or device arrays, as Spans).
void require_disjoint(Span out, const char* out_name, Span in, const char* in_name);
// The same against each input of a list: require_disjoint(y, "out", {{x, "x"}, {w, "w"}}).
struct Named {
    Span a;
    const char* name;
};
void require_disjoint(Span out, const char* out_name, std::initializer_list<Named> ins);
void require_disjoint_or_same(Span out, const char* out_name, Span in, const char* in_name);
// The overlap rules of the batch-norm ops (forward train/eval, backward), one list for both
// modules. y (dx) is written element by element after x and residual (dy and x) are read: it
// may be one of them, but must not share memory with them otherwise, nor with anything
// else. Every other output (the running statistics written in training, mean/rstd,
// dgamma/dbeta) overlaps nothing. Absent optionals are empty Spans.
void require_bn_forward_disjoint(Span y, Span x, Span residual, Span gamma, Span beta, Span rm,
                                 Span rv, bool training, Span mean, Span rstd);
void require_bn_backward_disjoint(Span dx, Span dy, Span x, Span add, Span gamma, Span mean,
                                  Span rstd, Span beta, Span dgamma, Span dbeta);

// Values a kernel uses as indices (labels): obj must be an int32 or int64 (n,) array; its
// values are copied while the GIL is held and checked in the copy to lie in [0, hi), else a
// ValueError naming name[i] (hi < 0: not checked, for kernels that handle any value). The
// kernel reads the copy: another Python thread may change the array as soon as the GIL is
// released, but not the values that were checked.
std::vector<int64_t> copy_indices(const py::handle& obj, const char* name, int64_t n,
                                  int64_t hi, const char* hi_name);

// A new array of this shape must fit in the memory the process can still get (RAM and swap
// available, and its cgroup's limit): else a MemoryError naming the array and both sizes,
// raised before anything is allocated (a huge request would otherwise swap or meet the OOM
// killer, or overflow the byte count).
void require_memory(const char* name, const Dims& dims, size_t itemsize);
// The module-neutral halves of the memory rule, also used for device memory (_cuda):
// the bytes of an array of this shape (in double: no overflow), checked only from
// kMemoryCheckAbove bytes (smaller requests skip the query);
// MemoryError "name: an array of shape (...) needs <bytes>, more than the <available> of
// <what> available" unless it fits in `available` bytes (infinity: any size below 2^63);
// MemoryError "name: allocating an array of shape (...) failed (out of <what>)".
constexpr double kMemoryCheckAbove = 64.0 * (1 << 20);
double array_bytes(const Dims& dims, size_t itemsize);
void require_fits(const char* name, const Dims& dims, size_t itemsize, double available,
                  const char* what);
[[noreturn]] void raise_allocation_failed(const char* name, const Dims& dims, const char* what);

inline float* ptr(py::array_t<float>& a) { return a.mutable_data(); }
inline const float* cptr(const py::array_t<float>& a) { return a.data(); }

// ------------------------------------------------------------------ scalars

// Integer-valued scalar range checks with a named error.
void require_range(int64_t v, const char* name, int64_t lo, int64_t hi);
void require_positive(double v, const char* name);
void require_unit_interval(double v, const char* name);   // [0, 1]
void require_unit(double v, const char* name);            // [0, 1)
void require_finite_nonneg(double v, const char* name);   // >= 0, finite in float32
void require_eps(double eps);                             // finite, > 0
void require_step(double step);                           // an integer >= 1 (Adam's step)
// A hyperparameter that may also come as a one-element array (lr, Adam's step): its value
// if `obj` is a number, else TypeError "name: expected a number or a one-element <dtype>
// array". Given as an array, it must hold exactly one value (require_one_value).
double require_number(const py::handle& obj, const char* name, const char* dtype);
void require_one_value(const char* name, const Dims& shape);
// Adam's step: a Python int (not a float or bool), unless given as an array.
void require_int_step(const py::handle& step);

// ------------------------------------------------------------------ op shape rules

// An activation whose leading (batch) dimension is 0: "name: empty batch (N = 0)".
void require_batch(const char* name, const Dims& shape);
// stride/pad against the kernel size; P, Q >= 1. x is (N,H,W,C), w (R,S,C,K).
rc::ConvShape checked_conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                                 int64_t R, int64_t S, int64_t stride, int64_t pad);
// Max pool window against x (N,H,W,C): k, stride >= 1, pad <= k/2, the window fits the
// padded input, H*W fits int32 (argmax is int32).
rc::PoolShape checked_pool_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k,
                                 int64_t stride, int64_t pad);
// The same for the backward: dy must be the forward output (N,P,Q,C) of an HxW input.
rc::PoolShape checked_pool_backward_shape(const Dims& dy, int64_t H, int64_t W, int64_t k,
                                          int64_t stride, int64_t pad);
// Training batch norm needs M = N*H*W > 1 values per channel.
void require_bn_batch(int64_t M, const Dims& x_shape);
// The four (C,) vectors of a batch-norm forward, checked with the module's array check
// `require(obj, name, dims, writable)`; the running statistics are written in training.
template <class Require>
auto require_bn_vectors(Require&& require, const py::handle& gamma, const py::handle& beta,
                        const py::handle& running_mean, const py::handle& running_var,
                        int64_t C, bool training) {
    const Dims c{C};
    // Braces: evaluated left to right, so the first bad argument is the one reported.
    return std::tuple{require(gamma, "gamma", c, false), require(beta, "beta", c, false),
                      require(running_mean, "running_mean", c, training),
                      require(running_var, "running_var", c, training)};
}
// The (C,) vectors of a batch-norm backward (gamma, mean, rstd), then beta, required (and
// checked) only with relu: the mask is recomputed from it. Returns the four, beta empty
// (default-constructed) without relu.
template <class Require>
auto require_bn_backward_vectors(Require&& require, const py::handle& gamma,
                                 const py::handle& mean, const py::handle& rstd,
                                 const py::handle& beta, bool relu, int64_t C) {
    const Dims c{C};
    auto g = require(gamma, "gamma", c, false);
    auto m = require(mean, "mean", c, false);
    auto r = require(rstd, "rstd", c, false);
    if (relu && beta.is_none())
        throw py::value_error("beta: required with relu=True (the ReLU mask is recomputed "
                              "from x, gamma, beta, mean and rstd)");
    return std::tuple{g, m, r, relu ? require(beta, "beta", c, false) : decltype(g){}};
}
// Global average pool backward: dy (N,C) and the input's H, W -> dx's dims (N,H,W,C).
Dims gap_backward_dims(const Dims& dy, int64_t H, int64_t W);
// Option-A shortcut: x (N,H,W,C) -> (N, ceil(H/stride), ceil(W/stride), channels_out).
Dims shortcut_a_out_dims(const Dims& x, int64_t channels_out, int64_t stride);
// Its backward, from dy's (N,*,*,K) and the input's H, W, channels_in <= K: returns
// {dy's expected dims (N,ceil(H/stride),ceil(W/stride),K), dx's dims (N,H,W,channels_in)}.
std::pair<Dims, Dims> shortcut_a_backward_dims(const Dims& dy, int64_t channels_in, int64_t H,
                                               int64_t W, int64_t stride);

}  // namespace rc::py_checks
