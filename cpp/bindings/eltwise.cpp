// bindings/eltwise.cpp: Python bindings for the elementwise kernels (cpp/eltwise.cpp).
// relu/add take float32 C-contiguous arrays of any shape (ndim >= 1, no empty dimension);
// the layout conversions take 4-d activations. relu/add and their backward may write over an
// input (out=x: every element is read before it is written), never over part of one; the
// shortcut and the layout conversions need an out that shares no memory with their input.
#include "checks.h"
#include "simd/eltwise_kernels.h"

namespace py = pybind11;
using rc::py_checks::cptr;
using rc::py_checks::Dims;
using rc::py_checks::output_f32;
using rc::py_checks::ptr;
using rc::py_checks::require_disjoint;
using rc::py_checks::require_disjoint_or_same;
using rc::py_checks::require_f32;
using rc::py_checks::require_range;

namespace {

// Any-shape float32 array: the dims pattern is taken from its own ndim (all sizes >= 1).
py::array_t<float> require_any(const py::handle& obj, const char* name) {
    py::ssize_t nd = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj).ndim() : 1;
    if (nd == 0) throw py::value_error(std::string(name) + ": expected an array with ndim >= 1, got a 0-d array");
    return require_f32(obj, name, Dims(nd, -1));
}

Dims dims_of(const py::array& a) { return Dims(a.shape(), a.shape() + a.ndim()); }

}  // namespace

void bind_eltwise(py::module_& m) {
    m.def(
        "relu_forward",
        [](py::handle x_, py::object out) {
            auto x = require_any(x_, "x");
            auto y = output_f32(out, "out", dims_of(x));
            require_disjoint_or_same(y, "out", x, "x");
            {
                py::gil_scoped_release nogil;
                rc::relu_forward(cptr(x), ptr(y), x.size());
            }
            return y;
        },
        py::arg("x"), py::arg("out") = py::none(), "y = max(x, 0), any shape.");

    // relu and add+relu share one backward: the mask of the forward output.
    auto masked = [](py::handle dy_, py::handle y_, py::object out) {
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
    };
    m.def(
        "relu_backward", masked, py::arg("dy"), py::arg("y"), py::arg("out") = py::none(),
        "dx = dy * (y > 0), y the forward output; dy and y have the same shape.");

    auto add = [](py::handle a_, py::handle b_, py::object out, bool relu) {
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
    };
    m.def(
        "add_forward", [add](py::handle a, py::handle b, py::object out) { return add(a, b, out, false); },
        py::arg("a"), py::arg("b"), py::arg("out") = py::none(), "y = a + b (same shapes).");
    m.def(
        "add_relu_forward",
        [add](py::handle a, py::handle b, py::object out) { return add(a, b, out, true); },
        py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        "y = max(a + b, 0) (same shapes): the residual join of a ResNet block.");
    m.def(
        "add_relu_backward", masked, py::arg("dy"), py::arg("y"), py::arg("out") = py::none(),
        "d = dy * (y > 0), the gradient of add_relu for both a and b.");

    m.def(
        "shortcut_a_forward",
        [](py::handle x_, int64_t channels_out, int64_t stride, py::object out) {
            auto x = require_f32(x_, "x", {-1, -1, -1, -1});
            const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
            require_range(stride, "stride", 1, INT32_MAX);
            require_range(channels_out, "channels_out", C, INT32_MAX);
            const int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
            auto y = output_f32(out, "out", {N, Ho, Wo, channels_out});
            require_disjoint(y, "out", x, "x");
            {
                py::gil_scoped_release nogil;
                rc::shortcut_a_forward(cptr(x), ptr(y), N, H, W, C, channels_out, stride);
            }
            return y;
        },
        py::arg("x"), py::arg("channels_out"), py::arg("stride"), py::arg("out") = py::none(),
        "Option-A shortcut, NHWC: x (N,H,W,C) -> (N,ceil(H/stride),ceil(W/stride),channels_out),\n"
        "subsampled by stride, channels zero-padded by (K-C)//2 below and the rest above.");
    m.def(
        "shortcut_a_backward",
        [](py::handle dy_, int64_t channels_in, int64_t H, int64_t W, int64_t stride,
           py::object out, bool accumulate) {
            auto dy = require_f32(dy_, "dy", {-1, -1, -1, -1});
            const int64_t N = dy.shape(0), K = dy.shape(3);
            require_range(stride, "stride", 1, INT32_MAX);
            require_range(channels_in, "channels_in", 1, K);
            require_range(H, "H", 1, INT32_MAX);
            require_range(W, "W", 1, INT32_MAX);
            require_f32(dy_, "dy", {N, (H - 1) / stride + 1, (W - 1) / stride + 1, K});
            if (accumulate && out.is_none())
                throw py::value_error("out: required with accumulate=True (dx += the gradient)");
            auto dx = output_f32(out, "out", {N, H, W, channels_in});
            require_disjoint(dx, "out", dy, "dy");
            {
                py::gil_scoped_release nogil;
                rc::shortcut_a_backward(cptr(dy), ptr(dx), N, H, W, channels_in, K, stride,
                                        accumulate);
            }
            return dx;
        },
        py::arg("dy"), py::arg("channels_in"), py::arg("H"), py::arg("W"), py::arg("stride"),
        py::arg("out") = py::none(), py::arg("accumulate") = false,
        "Backward of shortcut_a_forward: dx (N,H,W,channels_in); accumulate adds into out.");

    m.def(
        "nchw_to_nhwc",
        [](py::handle x_, py::object out) {
            auto x = require_f32(x_, "x", {-1, -1, -1, -1});
            const int64_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
            auto y = output_f32(out, "out", {N, H, W, C});
            require_disjoint(y, "out", x, "x");
            {
                py::gil_scoped_release nogil;
                rc::nchw_to_nhwc(cptr(x), ptr(y), N, C, H * W);
            }
            return y;
        },
        py::arg("x"), py::arg("out") = py::none(), "x (N,C,H,W) -> (N,H,W,C).");
    m.def(
        "nhwc_to_nchw",
        [](py::handle x_, py::object out) {
            auto x = require_f32(x_, "x", {-1, -1, -1, -1});
            const int64_t N = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
            auto y = output_f32(out, "out", {N, C, H, W});
            require_disjoint(y, "out", x, "x");
            {
                py::gil_scoped_release nogil;
                rc::nhwc_to_nchw(cptr(x), ptr(y), N, C, H * W);
            }
            return y;
        },
        py::arg("x"), py::arg("out") = py::none(), "x (N,H,W,C) -> (N,C,H,W).");
}
