// bindings/batchnorm.cpp: Python bindings for the batch-norm kernels (cpp/batchnorm.cpp).
// Activations are NHWC (N,H,W,C) or already-flattened (M,C); per-channel vectors are (C,).
#include <cmath>

#include "checks.h"
#include "simd/batchnorm_kernels.h"

namespace py = pybind11;
using rc::py_checks::cptr;
using rc::py_checks::Dims;
using rc::py_checks::output_f32;
using rc::py_checks::ptr;
using rc::py_checks::require_disjoint;
using rc::py_checks::require_disjoint_or_same;
using rc::py_checks::require_f32;

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

// The forward's y is written element by element after x and residual are read: it may be
// either of them, but must not share memory with them otherwise, nor with the (C,) vectors.
void require_elementwise_out(const py::array_t<float>& y, const Act& x,
                             const py::array_t<float>& residual,
                             std::initializer_list<rc::py_checks::Named> vectors) {
    require_disjoint_or_same(y, "out", x.a, "x");
    require_disjoint_or_same(y, "out", residual, "residual");
    require_disjoint(y, "out", vectors);
}

void require_unit_interval(double v, const char* name) {
    if (!(v >= 0.0 && v <= 1.0))
        throw py::value_error(std::string(name) + ": expected a number in [0, 1], got " + std::to_string(v));
}

void require_eps(double eps) {
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite positive number, got " + std::to_string(eps));
}

}  // namespace

void bind_batchnorm(py::module_& m) {
    m.def(
        "batch_norm_forward_train",
        [](py::handle x_, py::handle gamma_, py::handle beta_, py::handle rm_, py::handle rv_,
           double momentum, double eps, bool relu, py::object out, py::object residual_) {
            Act x = require_act(x_, "x");
            py::array_t<float> residual;
            const float* rp = optional_like(residual_, "residual", x, residual);
            const Dims c{x.C};
            auto gamma = require_f32(gamma_, "gamma", c);
            auto beta = require_f32(beta_, "beta", c);
            auto rm = require_f32(rm_, "running_mean", c, true);
            auto rv = require_f32(rv_, "running_var", c, true);
            require_unit_interval(momentum, "momentum");
            require_eps(eps);
            if (x.M < 2)
                throw py::value_error("x: training batch norm needs more than one value per "
                                      "channel (N*H*W > 1), got shape " + rc::py_checks::shape_str(x.a));
            auto y = output_f32(out, "out", x.dims);
            require_elementwise_out(y, x, residual, {{gamma, "gamma"}, {beta, "beta"},
                                                     {rm, "running_mean"}, {rv, "running_var"}});
            require_disjoint(rm, "running_mean", {{x.a, "x"}, {residual, "residual"},
                                                  {gamma, "gamma"}, {beta, "beta"},
                                                  {rv, "running_var"}});
            require_disjoint(rv, "running_var", {{x.a, "x"}, {residual, "residual"},
                                                 {gamma, "gamma"}, {beta, "beta"}});
            py::array_t<float> mean(x.C), rstd(x.C);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_forward_train(cptr(x.a), rp, cptr(gamma), cptr(beta), ptr(rm),
                                             ptr(rv), ptr(y), ptr(mean), ptr(rstd), x.M, x.C,
                                             momentum, eps, relu);
            }
            return py::make_tuple(y, mean, rstd);
        },
        py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("momentum") = 0.1, py::arg("eps") = 1e-5,
        py::arg("relu") = false, py::arg("out") = py::none(), py::arg("residual") = py::none(),
        "Training batch norm over x (N,H,W,C) or (M,C): returns (y, mean (C,), rstd (C,)) and\n"
        "updates running_mean/running_var in place (unbiased variance). residual (x's shape)\n"
        "is added to the normalized value, then relu fuses max(y, 0).");

    m.def(
        "batch_norm_forward_eval",
        [](py::handle x_, py::handle gamma_, py::handle beta_, py::handle rm_, py::handle rv_,
           double eps, bool relu, py::object out, py::object residual_) {
            Act x = require_act(x_, "x");
            py::array_t<float> residual;
            const float* rp = optional_like(residual_, "residual", x, residual);
            const Dims c{x.C};
            auto gamma = require_f32(gamma_, "gamma", c);
            auto beta = require_f32(beta_, "beta", c);
            auto rm = require_f32(rm_, "running_mean", c);
            auto rv = require_f32(rv_, "running_var", c);
            require_eps(eps);
            auto y = output_f32(out, "out", x.dims);
            require_elementwise_out(y, x, residual, {{gamma, "gamma"}, {beta, "beta"},
                                                     {rm, "running_mean"}, {rv, "running_var"}});
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_forward_eval(cptr(x.a), rp, cptr(gamma), cptr(beta), cptr(rm),
                                            cptr(rv), ptr(y), x.M, x.C, eps, relu);
            }
            return y;
        },
        py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("eps") = 1e-5, py::arg("relu") = false,
        py::arg("out") = py::none(), py::arg("residual") = py::none(),
        "Eval batch norm with running stats over x (N,H,W,C) or (M,C); residual (x's shape) is\n"
        "added to the normalized value, then relu fuses max(y, 0).");

    m.def(
        "batch_norm_backward",
        [](py::handle dy_, py::handle x_, py::handle gamma_, py::handle mean_, py::handle rstd_,
           py::object beta_, bool relu, bool train, py::object out, py::object add_) {
            Act x = require_act(x_, "x");
            auto dy = require_f32(dy_, "dy", x.dims);
            const Dims c{x.C};
            auto gamma = require_f32(gamma_, "gamma", c);
            auto mean = require_f32(mean_, "mean", c);
            auto rstd = require_f32(rstd_, "rstd", c);
            if (relu && beta_.is_none())
                throw py::value_error("beta: required with relu=True (the ReLU mask is "
                                      "recomputed from x, gamma, beta, mean and rstd)");
            py::array_t<float> beta;
            if (relu) beta = require_f32(beta_, "beta", c);
            const float* bp = relu ? cptr(beta) : nullptr;
            py::array_t<float> add;
            const float* ap = optional_like(add_, "add", x, add);
            auto dx = output_f32(out, "out", x.dims);
            // Each element of dy and x is read before dx is written over it.
            require_disjoint_or_same(dx, "out", dy, "dy");
            require_disjoint_or_same(dx, "out", x.a, "x");
            require_disjoint(dx, "out", {{add, "add"}, {gamma, "gamma"}, {mean, "mean"},
                                         {rstd, "rstd"}, {beta, "beta"}});
            py::array_t<float> dgamma(x.C), dbeta(x.C);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_backward(cptr(dy), cptr(x.a), cptr(gamma), bp, cptr(mean),
                                        cptr(rstd), relu, ap, ptr(dx), ptr(dgamma), ptr(dbeta),
                                        x.M, x.C, train);
            }
            return py::make_tuple(dx, dgamma, dbeta);
        },
        py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"),
        py::arg("beta") = py::none(), py::arg("relu") = false, py::arg("train") = true,
        py::arg("out") = py::none(), py::arg("add") = py::none(),
        "Batch norm backward: returns (dx, dgamma, dbeta). relu: the forward fused a ReLU; dy\n"
        "is masked where (x - mean) * gamma * rstd + beta <= 0, recomputed from x exactly as\n"
        "the forward did (needs beta). train: mean/rstd are the cached batch stats; else the\n"
        "running ones (frozen BN, dx = dy * gamma * rstd). add (x's shape): summed into dx in\n"
        "the same pass. out may be dy or x (in place), not add.");
}
