// bindings/linear.cpp: Python bindings for the linear kernels (cpp/linear.cpp).
//   linear_forward(x (N,F), w (O,F), b (O,) or None, out=None) -> y (N,O) = x w^T + b
//   linear_backward(dy (N,O), x, w, need_dx, with_bias, dx_out=None, dw_out=None, db_out=None)
//       -> (dx or None, dw (O,F), db or None)
#include <utility>
#include <vector>

#include "checks.h"
#include "ops.h"
#include "linear.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// The GEMMs read their inputs while they write the outputs: no output may share memory
// with an input (the result would be silently wrong).
void require_no_overlap(const py::array_t<float>& out, const char* out_name,
                        const py::array_t<float>& in, const char* in_name) {
    const float *o = out.data(), *i = in.data();
    if (out.size() && in.size() && o < i + in.size() && i < o + out.size())
        throw py::value_error(std::string(out_name) + ": must not share memory with " + in_name);
}

py::array linear_fwd(const py::object& x_, const py::object& w_, const py::object& b_,
                     const py::object& out) {
    auto x = require_f32(x_, "x", {-1, -1});
    const int64_t N = x.shape(0), F = x.shape(1);
    auto w = require_f32(w_, "w", {-1, F});
    const int64_t O = w.shape(0);
    py::array_t<float> b;
    if (!b_.is_none()) b = require_f32(b_, "b", {O});
    auto y = output_f32(out, "out", {N, O});
    require_no_overlap(y, "out", x, "x");
    require_no_overlap(y, "out", w, "w");
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
    // Outputs that are computed: none may overlap an input or another output.
    std::vector<std::pair<py::array_t<float>*, const char*>> outs{{&dw, "dw_out"}};
    if (need_dx) outs.push_back({&dxa, "dx_out"});
    if (with_bias) outs.push_back({&dba, "db_out"});
    for (size_t i = 0; i < outs.size(); ++i) {
        require_no_overlap(*outs[i].first, outs[i].second, dy, "dy");
        require_no_overlap(*outs[i].first, outs[i].second, x, "x");
        require_no_overlap(*outs[i].first, outs[i].second, w, "w");
        for (size_t j = 0; j < i; ++j)
            require_no_overlap(*outs[i].first, outs[i].second, *outs[j].first, outs[j].second);
    }
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
