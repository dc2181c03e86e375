// bindings/conv.cpp: Python bindings for the conv kernels (cpp/conv.cpp). Raw NHWC + RSCK
// interface; resnet_cpp.functional.conv2d is the user API on top.
#include <pybind11/stl.h>

#include <optional>
#include <tuple>

#include "checks.h"
#include "simd/conv_kernels.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// Validates every size (before any arithmetic on them: conv2d_algorithm takes them as
// numbers) and stride/pad against the kernel size; returns the shape, P, Q >= 1.
rc::ConvShape checked_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t R,
                            int64_t S, int64_t stride, int64_t pad) {
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

int64_t dim(const py::handle& a, int i) { return py::reinterpret_borrow<py::array>(a).shape(i); }

// Batch size and the other leading dims are read after the ndim check of require_f32.
py::array_t<float> first_check(const py::handle& obj, const char* name) {
    if (py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() == 4 &&
        py::reinterpret_borrow<py::array>(obj).shape(0) == 0)
        throw py::value_error(std::string(name) + ": empty batch (N = 0)");
    return require_f32(obj, name, {-1, -1, -1, -1});
}

}  // namespace

void bind_conv(py::module_& m) {
    m.def("set_conv_algorithm", [](const std::string& name) { rc::set_conv_algo(rc::parse_conv_algo(name)); },
          py::arg("name"),
          "3x3 stride-1 convolutions: 'auto' (default), 'direct', 'winograd2' (F(2x2,3x3)) or "
          "'winograd4' (F(4x4,3x3)); as RESNET_CPP_CONV_ALGO.");
    m.def("conv_algorithm", [] { return std::string(rc::conv_algo_name(rc::conv_algo())); });
    m.def(
        "conv2d_algorithm",
        [](const std::string& pass, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
           int64_t R, int64_t S, int64_t stride, int64_t pad) {
            rc::ConvPass p;
            if (pass == "forward") p = rc::ConvPass::forward;
            else if (pass == "backward_data") p = rc::ConvPass::backward_data;
            else if (pass == "backward_weight") p = rc::ConvPass::backward_weight;
            else
                throw py::value_error("pass: expected 'forward', 'backward_data' or "
                                      "'backward_weight', got '" + pass + "'");
            rc::ConvShape s = checked_shape(N, H, W, C, K, R, S, stride, pad);
            const int m = rc::conv_winograd_tile(s, p);
            return std::string(m == 0 ? "direct" : m == 2 ? "winograd2" : "winograd4");
        },
        py::arg("pass"), py::arg("N"), py::arg("H"), py::arg("W"), py::arg("C"), py::arg("K"),
        py::arg("R"), py::arg("S"), py::arg("stride"), py::arg("pad"),
        "Which algorithm ('direct', 'winograd2' or 'winograd4') a conv call of this shape runs now.");
    m.def(
        "conv2d_forward",
        [](const py::object& xo, const py::object& wo, const py::object& bo, int64_t stride,
           int64_t pad, const py::object& out) {
            auto x = first_check(xo, "x");
            auto w = require_f32(wo, "w", {-1, -1, -1, -1});
            int64_t N = dim(x, 0), H = dim(x, 1), W = dim(x, 2), C = dim(x, 3);
            int64_t R = dim(w, 0), S = dim(w, 1), K = dim(w, 3);
            w = require_f32(wo, "w", {R, S, C, K});
            std::optional<py::array_t<float>> b;
            if (!bo.is_none()) b = require_f32(bo, "b", {K});
            rc::ConvShape s = checked_shape(N, H, W, C, K, R, S, stride, pad);
            auto y = output_f32(out, "out", {N, s.P, s.Q, K});
            require_disjoint(y, "out", {{x, "x"}, {w, "w"}, {b ? *b : py::array(), "b"}});
            const float* bp = b ? cptr(*b) : nullptr;
            {
                py::gil_scoped_release nogil;
                rc::conv2d_forward(cptr(x), cptr(w), bp, ptr(y), s);
            }
            return y;
        },
        py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("stride") = 1,
        py::arg("pad") = 0, py::arg("out") = py::none(),
        "y (N,P,Q,K) = conv(x (N,H,W,C), w (R,S,C,K)) + b (K,) or None. NHWC, RSCK.");

    m.def(
        "conv2d_backward_data",
        [](const py::object& dyo, const py::object& wo, int64_t H, int64_t W, int64_t stride,
           int64_t pad, const py::object& out) {
            auto dy = first_check(dyo, "dy");
            auto w = require_f32(wo, "w", {-1, -1, -1, -1});
            int64_t N = dim(dy, 0), K = dim(dy, 3);
            int64_t R = dim(w, 0), S = dim(w, 1), C = dim(w, 2);
            w = require_f32(wo, "w", {R, S, C, K});
            rc::ConvShape s = checked_shape(N, H, W, C, K, R, S, stride, pad);
            require_f32(dyo, "dy", {N, s.P, s.Q, K});
            auto dx = output_f32(out, "out", {N, H, W, C});
            require_disjoint(dx, "out", {{dy, "dy"}, {w, "w"}});
            {
                py::gil_scoped_release nogil;
                rc::conv2d_backward_data(cptr(dy), cptr(w), ptr(dx), s);
            }
            return dx;
        },
        py::arg("dy"), py::arg("w"), py::arg("H"), py::arg("W"), py::arg("stride") = 1,
        py::arg("pad") = 0, py::arg("out") = py::none(),
        "dx (N,H,W,C) from dy (N,P,Q,K) and w (R,S,C,K); H, W: input size. NHWC, RSCK.");

    m.def(
        "conv2d_backward_weight",
        [](const py::object& xo, const py::object& dyo, int64_t R, int64_t S, int64_t stride,
           int64_t pad, bool with_bias, const py::object& dw_out, const py::object& db_out) {
            auto x = first_check(xo, "x");
            auto dy = first_check(dyo, "dy");
            int64_t N = dim(x, 0), H = dim(x, 1), W = dim(x, 2), C = dim(x, 3), K = dim(dy, 3);
            rc::ConvShape s = checked_shape(N, H, W, C, K, R, S, stride, pad);
            require_f32(dyo, "dy", {N, s.P, s.Q, K});
            auto dw = output_f32(dw_out, "dw_out", {R, S, C, K});
            std::optional<py::array_t<float>> db;
            if (with_bias) db = output_f32(db_out, "db_out", {K});
            else if (!db_out.is_none())
                throw py::value_error("db_out: given but with_bias is False");
            require_disjoint(dw, "dw_out", {{x, "x"}, {dy, "dy"}});
            if (db) require_disjoint(*db, "db_out", {{x, "x"}, {dy, "dy"}, {dw, "dw_out"}});
            float* dbp = db ? ptr(*db) : nullptr;
            {
                py::gil_scoped_release nogil;
                rc::conv2d_backward_weight(cptr(x), cptr(dy), ptr(dw), dbp, s);
            }
            return std::make_tuple(dw, db ? py::object(*db) : py::object(py::none()));
        },
        py::arg("x"), py::arg("dy"), py::arg("R"), py::arg("S"), py::arg("stride") = 1,
        py::arg("pad") = 0, py::arg("with_bias") = true, py::arg("dw_out") = py::none(),
        py::arg("db_out") = py::none(),
        "(dw (R,S,C,K), db (K,) or None) from x (N,H,W,C) and dy (N,P,Q,K). NHWC, RSCK.");
}
