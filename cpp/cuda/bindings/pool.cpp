// bindings/pool.cpp (_cuda): max and global average pooling (cpp/cuda/pool.cu), NHWC, with
// the contract of cpp/bindings/pool.cpp.
#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;

namespace {

py::tuple max_pool_fwd(const py::object& x_, int64_t k, int64_t stride, int64_t pad,
                       const py::object& out, const py::object& argmax_out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    const Dims& d = x->shape;
    rc::PoolShape s = rc::py_checks::checked_pool_shape(d[0], d[1], d[2], d[3], k, stride, pad);
    ArrayPtr y = output(out, "out", {s.N, s.P, s.Q, s.C});
    ArrayPtr am = output(argmax_out, "argmax_out", {s.N, s.P, s.Q, s.C}, DType::i32);
    require_disjoint(y, "out", x, "x");
    require_disjoint(am, "argmax_out", {{x, "x"}, {y, "out"}});
    {
        py::gil_scoped_release nogil;
        rc::cuda::max_pool2d_forward(x->f32(), y->f32(), static_cast<int32_t*>(am->ptr), s, stream());
    }
    return py::make_tuple(y, am);
}

ArrayPtr max_pool_bwd(const py::object& dy_, const py::object& argmax_, int64_t H, int64_t W,
                      int64_t k, int64_t stride, int64_t pad, const py::object& out) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1, -1, -1});
    ArrayPtr am = require(argmax_, "argmax", DType::i32, dy->shape);
    rc::PoolShape s = rc::py_checks::checked_pool_backward_shape(dy->shape, H, W, k, stride, pad);
    ArrayPtr dx = output(out, "out", {s.N, H, W, s.C});
    require_disjoint(dx, "out", {{dy, "dy"}, {am, "argmax"}});
    py::gil_scoped_release nogil;
    rc::cuda::max_pool2d_backward(dy->f32(), static_cast<const int32_t*>(am->ptr), dx->f32(), s,
                                  stream());
    return dx;
}

ArrayPtr gap_fwd(const py::object& x_, const py::object& out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    ArrayPtr y = output(out, "out", {N, C});
    require_disjoint(y, "out", x, "x");
    py::gil_scoped_release nogil;
    rc::cuda::global_avg_pool_forward(x->f32(), y->f32(), N, H * W, C, stream());
    return y;
}

ArrayPtr gap_bwd(const py::object& dy_, int64_t H, int64_t W, const py::object& out) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1});
    const int64_t N = dy->shape[0], C = dy->shape[1];
    const Dims dims = rc::py_checks::gap_backward_dims(dy->shape, H, W);
    ArrayPtr dx = output(out, "out", dims);
    require_disjoint(dx, "out", dy, "dy");
    py::gil_scoped_release nogil;
    rc::cuda::global_avg_pool_backward(dy->f32(), dx->f32(), N, H * W, C, stream());
    return dx;
}

}  // namespace

void bind_pool(py::module_& m) {
    rc::ops::max_pool2d_forward(m, &max_pool_fwd);
    rc::ops::max_pool2d_backward(m, &max_pool_bwd);
    rc::ops::global_avg_pool_forward(m, &gap_fwd);
    rc::ops::global_avg_pool_backward(m, &gap_bwd);
}
