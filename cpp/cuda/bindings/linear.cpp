// bindings/linear.cpp (_cuda): the fully connected layer (cpp/cuda/linear.cu), with the
// contract of cpp/bindings/linear.cpp.
#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;

namespace {

ArrayPtr linear_fwd(const py::object& x_, const py::object& w_, const py::object& b_,
                    const py::object& out) {
    ArrayPtr x = require_f32(x_, "x", {-1, -1});
    const int64_t N = x->shape[0], F = x->shape[1];
    ArrayPtr w = require_f32(w_, "w", {-1, F});
    const int64_t O = w->shape[0];
    ArrayPtr b;
    if (!b_.is_none()) b = require_f32(b_, "b", {O});
    ArrayPtr y = output(out, "out", {N, O});
    require_disjoint(y, "out", {{x, "x"}, {w, "w"}, {b, "b"}});
    {
        py::gil_scoped_release nogil;
        rc::cuda::linear_forward(x->f32(), w->f32(), b ? b->f32() : nullptr, y->f32(), N, F, O,
                                 stream());
    }
    return y;
}

py::tuple linear_bwd(const py::object& dy_, const py::object& x_, const py::object& w_, bool need_dx,
                     bool with_bias, const py::object& dx_out, const py::object& dw_out,
                     const py::object& db_out) {
    ArrayPtr dy = require_f32(dy_, "dy", {-1, -1});
    const int64_t N = dy->shape[0], O = dy->shape[1];
    ArrayPtr x = require_f32(x_, "x", {N, -1});
    const int64_t F = x->shape[1];
    ArrayPtr w = require_f32(w_, "w", {O, F});
    ArrayPtr dx, db;
    if (need_dx) dx = output(dx_out, "dx_out", {N, F});
    else if (!dx_out.is_none()) throw py::value_error("dx_out: given but need_dx is False");
    ArrayPtr dw = output(dw_out, "dw_out", {O, F});
    if (with_bias) db = output(db_out, "db_out", {O});
    else if (!db_out.is_none()) throw py::value_error("db_out: given but with_bias is False");
    // No output may overlap an input or another output (absent ones are null).
    require_disjoint(dw, "dw_out", {{dy, "dy"}, {x, "x"}, {w, "w"}});
    require_disjoint(dx, "dx_out", {{dy, "dy"}, {x, "x"}, {w, "w"}, {dw, "dw_out"}});
    require_disjoint(db, "db_out", {{dy, "dy"}, {x, "x"}, {w, "w"}, {dw, "dw_out"}, {dx, "dx_out"}});
    {
        py::gil_scoped_release nogil;
        rc::cuda::linear_backward(dy->f32(), x->f32(), w->f32(), dx ? dx->f32() : nullptr, dw->f32(),
                                  db ? db->f32() : nullptr, N, F, O, stream());
    }
    return py::make_tuple(dx ? py::cast(dx) : py::none(), dw, db ? py::cast(db) : py::none());
}

}  // namespace

void bind_linear(py::module_& m) {
    rc::ops::linear_forward(m, &linear_fwd);
    rc::ops::linear_backward(m, &linear_bwd);
}
