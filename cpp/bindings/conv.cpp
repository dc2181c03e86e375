// bindings/conv.cpp: Python bindings for the conv kernels (cpp/conv.cpp). Raw NHWC + RSCK
// interface; resnet_cpp.functional.conv2d is the user API on top.
#include <pybind11/stl.h>

#include <optional>
#include <tuple>

#include "checks.h"
#include "conv.h"
#include "ops.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

int64_t dim(const py::handle& a, int i) { return py::reinterpret_borrow<py::array>(a).shape(i); }

// A 4-d activation; an empty batch gets its own message before the generic shape check.
py::array_t<float> first_check(const py::handle& obj, const char* name) {
    if (py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() == 4)
        require_batch(name, {dim(obj, 0)});
    return require_f32(obj, name, {-1, -1, -1, -1});
}

}  // namespace

void bind_conv(py::module_& m) {
    m.def("set_conv_algorithm",
          [](const std::string& spec) { rc::set_conv_algo(rc::parse_conv_algo(spec)); },
          py::arg("name"),
          "3x3 stride-1 convolutions: 'auto' (default: the fastest float32-precise choice), "
          "'fast' (F(4x4,3x3) Winograd wherever it is faster; rounds more), 'direct', "
          "'winograd2' (F(2x2,3x3)) or 'winograd4' (F(4x4,3x3)); one name for every pass or "
          "'forward=...,backward_data=...,backward_weight=...'. As RESNET_CPP_CONV_ALGO.");
    m.def("conv_algorithm", [] { return rc::conv_algo_spec(rc::conv_algo()); });
    // Python wraps these in resnet_cpp.set_precision / precision / bf16_active (_precision.py).
    m.def("set_precision",
          [](const std::string& name) { rc::set_conv_precision(rc::parse_conv_precision(name)); },
          py::arg("name"),
          "Convolution operands: 'fp32' (default) or 'bf16' (rounded to bf16, fp32 sums; runs only "
          "where bf16_active()); as RESNET_CPP_PRECISION.");
    m.def("precision", [] { return std::string(rc::conv_precision_name(rc::conv_precision())); });
    m.def("bf16_active", &rc::conv_runs_bf16,
          "True when bf16 precision is set and the active ISA path has a bf16 dot product.");
    m.def(
        "round_to_bf16",
        [](const py::object& xo) {
            auto x = require_f32(xo, "x", {-1});
            auto y = output_f32(py::none(), "out", {x.shape(0)});
            {
                py::gil_scoped_release nogil;
                rc::round_to_bf16(cptr(x), ptr(y), x.shape(0));
            }
            return y;
        },
        py::arg("x"),
        "x (n,) float32 rounded to bf16 as the bf16 convolutions round their operands (nearest "
        "even, NaN quiet, denormals to signed zero), returned as float32.");
    rc::ops::conv2d_forward(
        m, [](const py::object& xo, const py::object& wo, const py::object& bo, int64_t stride,
           int64_t pad, const py::object& out) {
            auto x = first_check(xo, "x");
            auto w = require_f32(wo, "w", {-1, -1, -1, -1});
            int64_t N = dim(x, 0), H = dim(x, 1), W = dim(x, 2), C = dim(x, 3);
            int64_t R = dim(w, 0), S = dim(w, 1), K = dim(w, 3);
            w = require_f32(wo, "w", {R, S, C, K});
            std::optional<py::array_t<float>> b;
            if (!bo.is_none()) b = require_f32(bo, "b", {K});
            rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
            auto y = output_f32(out, "out", {N, s.P, s.Q, K});
            require_disjoint(y, "out", {{x, "x"}, {w, "w"}, {b ? *b : py::array(), "b"}});
            const float* bp = b ? cptr(*b) : nullptr;
            {
                py::gil_scoped_release nogil;
                rc::conv2d_forward(cptr(x), cptr(w), bp, ptr(y), s);
            }
            return y;
        });

    rc::ops::conv2d_backward_data(
        m, [](const py::object& dyo, const py::object& wo, int64_t H, int64_t W, int64_t stride,
           int64_t pad, const py::object& out) {
            auto dy = first_check(dyo, "dy");
            auto w = require_f32(wo, "w", {-1, -1, -1, -1});
            int64_t N = dim(dy, 0), K = dim(dy, 3);
            int64_t R = dim(w, 0), S = dim(w, 1), C = dim(w, 2);
            w = require_f32(wo, "w", {R, S, C, K});
            rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
            require_f32(dyo, "dy", {N, s.P, s.Q, K});
            auto dx = output_f32(out, "out", {N, H, W, C});
            require_disjoint(dx, "out", {{dy, "dy"}, {w, "w"}});
            {
                py::gil_scoped_release nogil;
                rc::conv2d_backward_data(cptr(dy), cptr(w), ptr(dx), s);
            }
            return dx;
        });

    rc::ops::conv2d_backward_weight(
        m, [](const py::object& xo, const py::object& dyo, int64_t R, int64_t S, int64_t stride,
           int64_t pad, bool with_bias, const py::object& dw_out, const py::object& db_out) {
            auto x = first_check(xo, "x");
            auto dy = first_check(dyo, "dy");
            int64_t N = dim(x, 0), H = dim(x, 1), W = dim(x, 2), C = dim(x, 3), K = dim(dy, 3);
            rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
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
        });
}
