// bindings/eltwise.cpp: Python bindings for the elementwise kernels (cpp/eltwise.cpp).
// relu/add take float32 C-contiguous arrays of any shape (ndim >= 1, no empty dimension);
// the layout conversions take 4-d activations. relu/add and their backward may write over an
// input (out=x: every element is read before it is written), never over part of one; the
// shortcut and the layout conversions need an out that shares no memory with their input.
#include "checks.h"
#include "eltwise.h"
#include "ops.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// Any-shape float32 array: the dims pattern is taken from its own ndim (all sizes >= 1).
py::array_t<float> require_any(const py::handle& obj, const char* name) {
    py::ssize_t nd = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj).ndim() : 1;
    return require_f32(obj, name, any_shape(name, nd));
}

Dims dims_of(const py::array& a) { return Dims(a.shape(), a.shape() + a.ndim()); }

// relu and add+relu share one backward: the mask of the forward output.
py::array_t<float> masked(py::handle dy_, py::handle y_, py::object out) {
    auto dy = require_any(dy_, "dy");
    auto y = require_f32(y_, "y", dims_of(dy));
    auto dx = output_f32(out, "out", dims_of(dy));
    require_disjoint_or_same(dx, "out", dy, "dy");
    require_disjoint_or_same(dx, "out", y, "y");
    {
        py::gil_scoped_release nogil;
        rc::relu_backward(cptr(dy), cptr(y), ptr(dx), dy.size());
    }
    return dx;
}

py::array_t<float> add(py::handle a_, py::handle b_, py::object out, bool relu) {
    auto a = require_any(a_, "a");
    auto b = require_f32(b_, "b", dims_of(a));
    auto y = output_f32(out, "out", dims_of(a));
    require_disjoint_or_same(y, "out", a, "a");
    require_disjoint_or_same(y, "out", b, "b");
    {
        py::gil_scoped_release nogil;
        rc::add_forward(cptr(a), cptr(b), ptr(y), a.size(), relu);
    }
    return y;
}

// to_nhwc: x (N,C,H,W) -> (N,H,W,C); else x (N,H,W,C) -> (N,C,H,W).
py::array_t<float> layout(py::handle x_, py::object out, bool to_nhwc) {
    auto x = require_f32(x_, "x", {-1, -1, -1, -1});
    const Dims d = dims_of(x);
    const int64_t N = d[0], C = to_nhwc ? d[1] : d[3];
    const int64_t H = to_nhwc ? d[2] : d[1], W = to_nhwc ? d[3] : d[2];
    auto y = output_f32(out, "out", to_nhwc ? Dims{N, H, W, C} : Dims{N, C, H, W});
    require_disjoint(y, "out", x, "x");
    {
        py::gil_scoped_release nogil;
        if (to_nhwc) rc::nchw_to_nhwc(cptr(x), ptr(y), N, C, H * W);
        else rc::nhwc_to_nchw(cptr(x), ptr(y), N, C, H * W);
    }
    return y;
}

}  // namespace

void bind_eltwise(py::module_& m) {
    rc::ops::relu_forward(m, [](py::handle x_, py::object out) {
        auto x = require_any(x_, "x");
        auto y = output_f32(out, "out", dims_of(x));
        require_disjoint_or_same(y, "out", x, "x");
        {
            py::gil_scoped_release nogil;
            rc::relu_forward(cptr(x), ptr(y), x.size());
        }
        return y;
    });
    rc::ops::relu_backward(m, &masked);
    rc::ops::add_forward(m, [](py::handle a, py::handle b, py::object out) { return add(a, b, out, false); });
    rc::ops::add_relu_forward(m, [](py::handle a, py::handle b, py::object out) { return add(a, b, out, true); });
    rc::ops::add_relu_backward(m, &masked);

    rc::ops::shortcut_a_forward(m, [](py::handle x_, int64_t channels_out, int64_t stride, py::object out) {
        auto x = require_f32(x_, "x", {-1, -1, -1, -1});
        const Dims d = dims_of(x);
        auto y = output_f32(out, "out", shortcut_a_out_dims(d, channels_out, stride));
        require_disjoint(y, "out", x, "x");
        {
            py::gil_scoped_release nogil;
            rc::shortcut_a_forward(cptr(x), ptr(y), d[0], d[1], d[2], d[3], channels_out, stride);
        }
        return y;
    });
    rc::ops::shortcut_a_backward(m, [](py::handle dy_, int64_t channels_in, int64_t H, int64_t W,
                                       int64_t stride, py::object out, bool accumulate) {
        auto dy = require_f32(dy_, "dy", {-1, -1, -1, -1});
        const auto [dy_dims, dx_dims] = shortcut_a_backward_dims(dims_of(dy), channels_in, H, W, stride);
        require_f32(dy_, "dy", dy_dims);
        if (accumulate && out.is_none())
            throw py::value_error("out: required with accumulate=True (dx += the gradient)");
        auto dx = output_f32(out, "out", dx_dims);
        require_disjoint(dx, "out", dy, "dy");
        {
            py::gil_scoped_release nogil;
            rc::shortcut_a_backward(cptr(dy), ptr(dx), dy_dims[0], H, W, channels_in, dy_dims[3],
                                    stride, accumulate);
        }
        return dx;
    });

    rc::ops::nchw_to_nhwc(m, [](py::handle x, py::object out) { return layout(x, out, true); });
    rc::ops::nhwc_to_nchw(m, [](py::handle x, py::object out) { return layout(x, out, false); });
}
