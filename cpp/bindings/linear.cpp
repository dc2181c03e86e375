// bindings/linear.cpp: Python bindings for the linear kernels (cpp/linear.cpp).
//   linear_forward(x (N,F), w (O,F), b (O,) or None, out=None) -> y (N,O) = x w^T + b
//   linear_backward(dy (N,O), x, w, need_dx, with_bias, dx_out=None, dw_out=None, db_out=None)
//       -> (dx or None, dw (O,F), db or None)
#include "checks.h"
#include "ops.h"
#include "linear.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

py::array linear_fwd(const py::object& x_, const py::object& w_, const py::object& b_,
                     const py::object& out) {
    auto x = require_f32(x_, "x", {-1, -1});
    const int64_t N = x.shape(0), F = x.shape(1);
    auto w = require_f32(w_, "w", {-1, F});
    const int64_t O = w.shape(0);
    py::array_t<float> b;
    if (!b_.is_none()) b = require_f32(b_, "b", {O});
    auto y = output_f32(out, "out", {N, O});
    // The GEMMs read their inputs while they write the output.
    require_disjoint(y, "out", {{x, "x"}, {w, "w"}, {b, "b"}});
    {
        py::gil_scoped_release nogil;
        rc::linear_forward(y.mutable_data(), x.data(), w.data(), b_.is_none() ? nullptr : b.data(),
                           N, F, O);
    }
    return y;
}

py::tuple linear_bwd(const py::object& dy_, const py::object& x_, const py::object& w_,
                     bool need_dx, bool with_bias, const py::object& dx_out,
                     const py::object& dw_out, const py::object& db_out) {
    auto dy = require_f32(dy_, "dy", {-1, -1});
    const int64_t N = dy.shape(0), O = dy.shape(1);
    auto x = require_f32(x_, "x", {N, -1});
    const int64_t F = x.shape(1);
    auto w = require_f32(w_, "w", {O, F});
    py::object dx = py::none(), db = py::none();
    py::array_t<float> dxa, dba;
    if (need_dx) dx = dxa = output_f32(dx_out, "dx_out", {N, F});
    if (with_bias) db = dba = output_f32(db_out, "db_out", {O});
    auto dw = output_f32(dw_out, "dw_out", {O, F});
    // No output may overlap an input or another output (absent ones are empty arrays).
    require_disjoint(dw, "dw_out", {{dy, "dy"}, {x, "x"}, {w, "w"}});
    require_disjoint(dxa, "dx_out", {{dy, "dy"}, {x, "x"}, {w, "w"}, {dw, "dw_out"}});
    require_disjoint(dba, "db_out",
                     {{dy, "dy"}, {x, "x"}, {w, "w"}, {dw, "dw_out"}, {dxa, "dx_out"}});
    {
        py::gil_scoped_release nogil;
        rc::linear_backward(need_dx ? dxa.mutable_data() : nullptr, dw.mutable_data(),
                            with_bias ? dba.mutable_data() : nullptr, dy.data(), x.data(),
                            w.data(), N, F, O);
    }
    return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_linear(py::module_& m) {
    rc::ops::linear_forward(m, &linear_fwd);
    rc::ops::linear_backward(m, &linear_bwd);
}
