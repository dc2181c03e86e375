// bindings/eltwise.cpp (_cuda): ReLU, the residual add, the option-A shortcut and the layout
// changes (cpp/cuda/eltwise.cu), with the contract of cpp/bindings/eltwise.cpp.
#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;

namespace {

ArrayPtr relu_fwd(const py::object& x_, const py::object& out) {
    ArrayPtr x = require_any(x_, "x");
    ArrayPtr y = output(out, "out", dims_of(*x));
    require_disjoint_or_same(y, "out", x, "x");
    py::gil_scoped_release nogil;
    rc::cuda::relu_forward(x->f32(), y->f32(), x->size(), stream());
    return y;
}

// relu and add+relu share one backward: the mask of the forward output.
ArrayPtr masked(const py::object& dy_, const py::object& y_, const py::object& out) {
    ArrayPtr dy = require_any(dy_, "dy");
    ArrayPtr y = require_f32(y_, "y", dims_of(*dy));
    ArrayPtr dx = output(out, "out", dims_of(*dy));
    require_disjoint_or_same(dx, "out", dy, "dy");
    require_disjoint_or_same(dx, "out", y, "y");
    py::gil_scoped_release nogil;
    rc::cuda::relu_backward(dy->f32(), y->f32(), dx->f32(), dy->size(), stream());
    return dx;
}

ArrayPtr add(const py::object& a_, const py::object& b_, const py::object& out, bool relu) {
    ArrayPtr a = require_any(a_, "a");
    ArrayPtr b = require_f32(b_, "b", dims_of(*a));
    ArrayPtr y = output(out, "out", dims_of(*a));
    require_disjoint_or_same(y, "out", a, "a");
    require_disjoint_or_same(y, "out", b, "b");
    py::gil_scoped_release nogil;
    rc::cuda::add_forward(a->f32(), b->f32(), y->f32(), a->size(), relu, stream());
    return y;
}

ArrayPtr shortcut_fwd(const py::object& x_, int64_t channels_out, int64_t stride,
                      const py::object& out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    const Dims& d = x->shape;
    ArrayPtr y = output(out, "out", rc::py_checks::shortcut_a_out_dims(d, channels_out, stride));
    require_disjoint(y, "out", x, "x");
    py::gil_scoped_release nogil;
    rc::cuda::shortcut_a_forward(x->f32(), y->f32(), d[0], d[1], d[2], d[3], channels_out, stride,
                                 stream());
    return y;
}

ArrayPtr shortcut_bwd(const py::object& dy_, int64_t channels_in, int64_t H, int64_t W,
                      int64_t stride, const py::object& out, bool accumulate) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1, -1, -1});
    const auto [dy_dims, dx_dims] =
        rc::py_checks::shortcut_a_backward_dims(dy->shape, channels_in, H, W, stride);
    require_f32(dy_, "dy", dy_dims);
    if (accumulate && out.is_none())
        throw py::value_error("out: required with accumulate=True (dx += the gradient)");
    ArrayPtr dx = output(out, "out", dx_dims);
    require_disjoint(dx, "out", dy, "dy");
    py::gil_scoped_release nogil;
    rc::cuda::shortcut_a_backward(dy->f32(), dx->f32(), dy_dims[0], H, W, channels_in, dy_dims[3],
                                  stride, accumulate, stream());
    return dx;
}

// to_nhwc: x (N,C,H,W) -> (N,H,W,C); else x (N,H,W,C) -> (N,C,H,W).
ArrayPtr layout(const py::object& x_, const py::object& out, bool to_nhwc) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1, -1, -1});
    const Dims& d = x->shape;
    const int64_t N = d[0], C = to_nhwc ? d[1] : d[3];
    const int64_t H = to_nhwc ? d[2] : d[1], W = to_nhwc ? d[3] : d[2];
    ArrayPtr y = output(out, "out", to_nhwc ? Dims{N, H, W, C} : Dims{N, C, H, W});
    require_disjoint(y, "out", x, "x");
    py::gil_scoped_release nogil;
    if (to_nhwc) rc::cuda::nchw_to_nhwc(x->f32(), y->f32(), N, C, H * W, stream());
    else rc::cuda::nhwc_to_nchw(x->f32(), y->f32(), N, C, H * W, stream());
    return y;
}

}  // namespace

void bind_eltwise(py::module_& m) {
    rc::ops::relu_forward(m, &relu_fwd);
    rc::ops::relu_backward(m, &masked);
    rc::ops::add_forward(m, [](const py::object& a, const py::object& b, const py::object& out) {
        return add(a, b, out, false);
    });
    rc::ops::add_relu_forward(m, [](const py::object& a, const py::object& b, const py::object& out) {
        return add(a, b, out, true);
    });
    rc::ops::add_relu_backward(m, &masked);
    rc::ops::shortcut_a_forward(m, &shortcut_fwd);
    rc::ops::shortcut_a_backward(m, &shortcut_bwd);
    rc::ops::nchw_to_nhwc(m, [](const py::object& x, const py::object& out) { return layout(x, out, true); });
    rc::ops::nhwc_to_nchw(m, [](const py::object& x, const py::object& out) { return layout(x, out, false); });
}
