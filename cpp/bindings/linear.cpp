// bindings/linear.cpp: Python bindings for the linear kernels (cpp/linear.cpp).
//   linear_forward(x (N,F), w (O,F), b (O,) or None, out=None) -> y (N,O) = x w^T + b
//   linear_backward(dy (N,O), x, w, need_dx, with_bias) -> (dx or None, dw (O,F), db or None)
#include "checks.h"
#include "linear.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// The GEMM reads x and w while it writes y: they must not share memory.
void require_no_overlap(const py::array_t<float>& out, const py::array_t<float>& in, const char* in_name) {
    const float *o = out.data(), *i = in.data();
    if (o < i + in.size() && i < o + out.size())
        throw py::value_error(std::string("out: must not share memory with ") + in_name);
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
    require_no_overlap(y, x, "x");
    require_no_overlap(y, w, "w");
    {
        py::gil_scoped_release nogil;
        rc::linear_forward(y.mutable_data(), x.data(), w.data(), b_.is_none() ? nullptr : b.data(),
                           N, F, O);
    }
    return y;
}

py::tuple linear_bwd(const py::object& dy_, const py::object& x_, const py::object& w_,
                     bool need_dx, bool with_bias) {
    auto dy = require_f32(dy_, "dy", {-1, -1});
    const int64_t N = dy.shape(0), O = dy.shape(1);
    auto x = require_f32(x_, "x", {N, -1});
    const int64_t F = x.shape(1);
    auto w = require_f32(w_, "w", {O, F});
    py::object dx = py::none(), db = py::none();
    py::array_t<float> dxa, dba;
    if (need_dx) dx = dxa = py::array_t<float>(std::vector<py::ssize_t>{N, F});
    if (with_bias) db = dba = py::array_t<float>(std::vector<py::ssize_t>{O});
    py::array_t<float> dw(std::vector<py::ssize_t>{O, F});
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
    m.def("linear_forward", &linear_fwd, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
          py::arg("out") = py::none(),
          "Fully connected: x (N,F), w (O,F), b (O,) or None -> y (N,O) = x w^T + b.");
    m.def("linear_backward", &linear_bwd, py::arg("dy"), py::arg("x"), py::arg("w"),
          py::arg("need_dx") = true, py::arg("with_bias") = true,
          "Linear backward: dy (N,O) -> (dx (N,F) or None, dw (O,F), db (O,) or None).");
}
