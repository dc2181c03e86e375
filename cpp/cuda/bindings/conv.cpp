// bindings/conv.cpp (_cuda): the conv kernels (cpp/cuda/conv.cu), NHWC activations and RSCK
// weights; the same op contract as cpp/bindings/conv.cpp (rc::ops, shared checks).
#include <limits>

#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;
using rc::py_checks::checked_conv_shape;
using rc::py_checks::require_range;

namespace {

// The implicit-GEMM kernels' 32-bit indexing of the (R*S*C) and (N*P*Q) dimensions; checked
// after the output is (so an output larger than the device memory is a MemoryError naming
// it, as on the CPU).
void require_32bit(const rc::ConvShape& s) {
    constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
    if (s.R * s.S * s.C > kMax || s.R * s.S * s.K > kMax || s.N * s.P * s.Q * s.K > kMax)
        throw py::value_error("conv: problem too large for 32-bit indexing");
}

ArrayPtr activation(const py::handle& obj, const char* name) {
    require_batch(obj, name);
    return require_f32(obj, name, {-1, -1, -1, -1});
}

ArrayPtr forward(const py::object& xo, const py::object& wo, const py::object& bo, int64_t stride,
                 int64_t pad, const py::object& out) {
    ArrayPtr x = activation(xo, "x");
    ArrayPtr w = require_f32(wo, "w", {-1, -1, -1, -1});
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    const int64_t R = w->shape[0], S = w->shape[1], K = w->shape[3];
    require_f32(wo, "w", {R, S, C, K});
    ArrayPtr b;
    if (!bo.is_none()) b = require_f32(bo, "b", {K});
    rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
    ArrayPtr y = output(out, "out", {N, s.P, s.Q, K});
    require_disjoint(y, "out", {{x, "x"}, {w, "w"}, {b, "b"}});
    require_32bit(s);
    py::gil_scoped_release nogil;
    rc::cuda::conv2d_forward(x->f32(), w->f32(), b ? b->f32() : nullptr, y->f32(), s, stream());
    return y;
}

ArrayPtr backward_data(const py::object& dyo, const py::object& wo, int64_t H, int64_t W,
                       int64_t stride, int64_t pad, const py::object& out) {
    ArrayPtr dy = activation(dyo, "dy");
    ArrayPtr w = require_f32(wo, "w", {-1, -1, -1, -1});
    const int64_t N = dy->shape[0], K = dy->shape[3];
    const int64_t R = w->shape[0], S = w->shape[1], C = w->shape[2];
    require_f32(wo, "w", {R, S, C, K});
    require_range(H, "H", 1, int64_t(1) << 30);
    require_range(W, "W", 1, int64_t(1) << 30);
    rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
    require_f32(dyo, "dy", {N, s.P, s.Q, K});
    ArrayPtr dx = output(out, "out", {N, H, W, C});
    require_disjoint(dx, "out", {{dy, "dy"}, {w, "w"}});
    require_32bit(s);
    py::gil_scoped_release nogil;
    rc::cuda::conv2d_backward_data(dy->f32(), w->f32(), dx->f32(), s, stream());
    return dx;
}

py::tuple backward_weight(const py::object& xo, const py::object& dyo, int64_t R, int64_t S,
                          int64_t stride, int64_t pad, bool with_bias, const py::object& dw_out,
                          const py::object& db_out) {
    ArrayPtr x = activation(xo, "x");
    ArrayPtr dy = activation(dyo, "dy");
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3], K = dy->shape[3];
    require_range(R, "R", 1, 1 << 16);
    require_range(S, "S", 1, 1 << 16);
    rc::ConvShape s = checked_conv_shape(N, H, W, C, K, R, S, stride, pad);
    require_f32(dyo, "dy", {N, s.P, s.Q, K});
    ArrayPtr dw = output(dw_out, "dw_out", {R, S, C, K});
    ArrayPtr db;
    if (with_bias) db = output(db_out, "db_out", {K});
    else if (!db_out.is_none()) throw py::value_error("db_out: given but with_bias is False");
    require_disjoint(dw, "dw_out", {{x, "x"}, {dy, "dy"}});
    require_disjoint(db, "db_out", {{x, "x"}, {dy, "dy"}, {dw, "dw_out"}});
    require_32bit(s);
    {
        py::gil_scoped_release nogil;
        rc::cuda::conv2d_backward_weight(x->f32(), dy->f32(), dw->f32(), db ? db->f32() : nullptr,
                                         s, stream());
    }
    return py::make_tuple(dw, db ? py::cast(db) : py::none());
}

}  // namespace

void bind_conv(py::module_& m) {
    rc::ops::conv2d_forward(m, &forward);
    rc::ops::conv2d_backward_data(m, &backward_data);
    rc::ops::conv2d_backward_weight(m, &backward_weight);
}
