// bindings/pool.cpp: Python bindings for the pool kernels (cpp/pool.cpp). Raw NHWC API:
//   max_pool2d_forward(x (N,H,W,C), k, stride, pad, out=None, argmax_out=None) -> (y, argmax)
//   max_pool2d_backward(dy (N,P,Q,C), argmax (N,P,Q,C) int32, H, W, k, stride, pad, out=None) -> dx
//   global_avg_pool_forward(x (N,H,W,C), out=None) -> y (N,C)
//   global_avg_pool_backward(dy (N,C), H, W, out=None) -> dx (N,H,W,C)
#include "checks.h"
#include "common.h"
#include "ops.h"
#include "pool.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// A caller-supplied int32 argmax buffer, or a fresh one.
py::array_t<int32_t> output_i32(const py::object& out, const char* name, const Dims& dims) {
    if (out.is_none())
        return py::reinterpret_borrow<py::array_t<int32_t>>(
            new_array(name, dims, py::dtype::of<int32_t>()));
    py::array a = require_int(out, name, dims, /*writable=*/true);
    check_dtype(name, a.dtype().equal(py::dtype::of<int32_t>()), "int32", py::str(a.dtype()));
    return py::reinterpret_borrow<py::array_t<int32_t>>(a);
}

py::tuple max_pool_fwd(const py::object& x_, int64_t k, int64_t stride, int64_t pad,
                       const py::object& out, const py::object& argmax_out) {
    auto x = require_f32(x_, "x", {-1, -1, -1, -1});
    rc::PoolShape s = checked_pool_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), k, stride, pad);
    const int64_t N = s.N, C = s.C;
    auto y = output_f32(out, "out", {N, s.P, s.Q, C});
    auto am = output_i32(argmax_out, "argmax_out", {N, s.P, s.Q, C});
    require_disjoint(y, "out", x, "x");
    require_disjoint(am, "argmax_out", {{x, "x"}, {y, "out"}});
    {
        py::gil_scoped_release nogil;
        rc::max_pool2d_forward(y.mutable_data(), am.mutable_data(), x.data(), s);
    }
    return py::make_tuple(y, am);
}

py::array max_pool_bwd(const py::object& dy_, const py::object& argmax_, int64_t H, int64_t W,
                       int64_t k, int64_t stride, int64_t pad, const py::object& out) {
    auto dy = require_f32(dy_, "dy", {-1, -1, -1, -1});
    const int64_t N = dy.shape(0), P = dy.shape(1), Q = dy.shape(2), C = dy.shape(3);
    py::array am = require_int(argmax_, "argmax", {N, P, Q, C});
    check_dtype("argmax", am.dtype().equal(py::dtype::of<int32_t>()), "int32", py::str(am.dtype()));
    rc::PoolShape s = checked_pool_backward_shape({N, P, Q, C}, H, W, k, stride, pad);
    auto dx = output_f32(out, "out", {N, H, W, C});
    require_disjoint(dx, "out", {{dy, "dy"}, {am, "argmax"}});
    // The kernel checks each argmax entry in the one read it indexes with, so a value
    // changed by another thread meanwhile is skipped (and reported), never used.
    bool ok;
    {
        py::gil_scoped_release nogil;
        ok = rc::max_pool2d_backward(dx.mutable_data(), dy.data(),
                                     static_cast<const int32_t*>(am.data()), s);
    }
    RC_CHECK(ok, "argmax: entries must lie in [0, H*W) = [0, " + std::to_string(H * W) + ")");
    return dx;
}

py::array gap_fwd(const py::object& x_, const py::object& out) {
    auto x = require_f32(x_, "x", {-1, -1, -1, -1});
    const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
    auto y = output_f32(out, "out", {N, C});
    require_disjoint(y, "out", x, "x");
    {
        py::gil_scoped_release nogil;
        rc::global_avg_pool_forward(y.mutable_data(), x.data(), N, H * W, C);
    }
    return y;
}

py::array gap_bwd(const py::object& dy_, int64_t H, int64_t W, const py::object& out) {
    auto dy = require_f32(dy_, "dy", {-1, -1});
    const int64_t N = dy.shape(0), C = dy.shape(1);
    auto dx = output_f32(out, "out", gap_backward_dims({N, C}, H, W));
    require_disjoint(dx, "out", dy, "dy");
    {
        py::gil_scoped_release nogil;
        rc::global_avg_pool_backward(dx.mutable_data(), dy.data(), N, H * W, C);
    }
    return dx;
}

}  // namespace

void bind_pool(py::module_& m) {
    rc::ops::max_pool2d_forward(m, &max_pool_fwd);
    rc::ops::max_pool2d_backward(m, &max_pool_bwd);
    rc::ops::global_avg_pool_forward(m, &gap_fwd);
    rc::ops::global_avg_pool_backward(m, &gap_bwd);
}
