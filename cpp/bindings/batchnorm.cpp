// bindings/batchnorm.cpp: Python bindings for the batch-norm kernels (cpp/batchnorm.cpp).
// Activations are NHWC (N,H,W,C) or already-flattened (M,C); per-channel vectors are (C,).
#include <algorithm>
#include <optional>

#include "checks.h"
#include "ops.h"
#include "simd/batchnorm_kernels.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// An activation: float32, C-contiguous, (N,H,W,C) or (M,C), every dimension >= 1.
struct Act {
    py::array_t<float> a;
    Dims dims;
    int64_t M, C;
};

Act require_act(const py::handle& obj, const char* name) {
    const bool two_d = py::isinstance<py::array>(obj) && py::array(py::reinterpret_borrow<py::array>(obj)).ndim() == 2;
    Dims want = two_d ? Dims{-1, -1} : Dims{-1, -1, -1, -1};
    py::array_t<float> a = require_f32(obj, name, want);
    Dims dims(a.shape(), a.shape() + a.ndim());
    const int64_t C = dims.back();
    return {a, dims, (int64_t)a.size() / C, C};
}

// An optional (N,H,W,C)/(M,C) operand shaped like x: nullptr when None. `keep` holds the
// checked array alive while its pointer is used.
const float* optional_like(const py::object& obj, const char* name, const Act& x,
                           py::array_t<float>& keep) {
    if (obj.is_none()) return nullptr;
    keep = require_f32(obj, name, x.dims);
    return cptr(keep);
}

}  // namespace

void bind_batchnorm(py::module_& m) {
    rc::ops::batch_norm_forward_train(
        m, [](py::handle x_, py::handle gamma_, py::handle beta_, py::handle rm_, py::handle rv_,
              double momentum, double eps, bool relu, py::object out, py::object residual_,
              py::object mean_out, py::object rstd_out) {
            Act x = require_act(x_, "x");
            py::array_t<float> residual;
            const float* rp = optional_like(residual_, "residual", x, residual);
            const Dims c{x.C};
            auto [gamma, beta, rm, rv] = require_bn_vectors(require_f32, gamma_, beta_, rm_, rv_, x.C, true);
            require_unit_interval(momentum, "momentum");
            require_eps(eps);
            require_bn_batch(x.M, x.dims);
            auto y = output_f32(out, "out", x.dims);
            auto mean = output_f32(mean_out, "mean_out", c);
            auto rstd = output_f32(rstd_out, "rstd_out", c);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_forward_train(cptr(x.a), rp, cptr(gamma), cptr(beta), ptr(rm),
                                             ptr(rv), ptr(y), ptr(mean), ptr(rstd), x.M, x.C,
                                             momentum, eps, relu);
            }
            return py::make_tuple(y, mean, rstd);
        });

    rc::ops::batch_norm_forward_eval(
        m, [](py::handle x_, py::handle gamma_, py::handle beta_, py::handle rm_, py::handle rv_,
              double eps, bool relu, py::object out, py::object residual_, py::object mean_out,
              py::object rstd_out) {
            Act x = require_act(x_, "x");
            py::array_t<float> residual;
            const float* rp = optional_like(residual_, "residual", x, residual);
            const Dims c{x.C};
            auto [gamma, beta, rm, rv] = require_bn_vectors(require_f32, gamma_, beta_, rm_, rv_, x.C, false);
            require_eps(eps);
            auto y = output_f32(out, "out", x.dims);
            std::optional<py::array_t<float>> mean, rstd;
            if (!mean_out.is_none()) mean = output_f32(mean_out, "mean_out", c);
            if (!rstd_out.is_none()) rstd = output_f32(rstd_out, "rstd_out", c);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_forward_eval(cptr(x.a), rp, cptr(gamma), cptr(beta), cptr(rm),
                                            cptr(rv), ptr(y), x.M, x.C, eps, relu);
                if (mean) std::copy(cptr(rm), cptr(rm) + x.C, ptr(*mean));
                if (rstd) rc::batch_norm_running_rstd(cptr(rv), ptr(*rstd), x.C, eps);
            }
            return y;
        });

    rc::ops::batch_norm_backward(
        m, [](py::handle dy_, py::handle x_, py::handle gamma_, py::handle mean_, py::handle rstd_,
              py::object beta_, bool relu, bool train, py::object out, py::object add_,
              py::object dgamma_out, py::object dbeta_out) {
            Act x = require_act(x_, "x");
            auto dy = require_f32(dy_, "dy", x.dims);
            const Dims c{x.C};
            auto [gamma, mean, rstd, beta] =
                require_bn_backward_vectors(require_f32, gamma_, mean_, rstd_, beta_, relu, x.C);
            const float* bp = relu ? cptr(beta) : nullptr;
            py::array_t<float> add;
            const float* ap = optional_like(add_, "add", x, add);
            auto dx = output_f32(out, "out", x.dims);
            auto dgamma = output_f32(dgamma_out, "dgamma_out", c);
            auto dbeta = output_f32(dbeta_out, "dbeta_out", c);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_backward(cptr(dy), cptr(x.a), cptr(gamma), bp, cptr(mean),
                                        cptr(rstd), relu, ap, ptr(dx), ptr(dgamma), ptr(dbeta),
                                        x.M, x.C, train);
            }
            return py::make_tuple(dx, dgamma, dbeta);
        });
}
