// bindings/batchnorm.cpp (_cuda): the batch-norm kernels (cpp/cuda/batchnorm.cu) with the
// same op contract as cpp/bindings/batchnorm.cpp: activations NHWC (N,H,W,C) or flattened
// (M,C), per-channel vectors (C,), the residual join and ReLU fused.
#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;
using rc::py_checks::require_bn_backward_vectors;
using rc::py_checks::require_bn_batch;
using rc::py_checks::require_bn_vectors;
using rc::py_checks::require_eps;
using rc::py_checks::require_unit_interval;

namespace {

// An activation (N,H,W,C) or (M,C), viewed as (M, C).
struct Act {
    ArrayPtr a;
    int64_t M, C;
};

Act require_act(const py::handle& obj, const char* name) {
    const bool two_d = as_array(obj, name)->shape.size() == 2;
    ArrayPtr a = require_f32(obj, name, two_d ? Dims{-1, -1} : Dims{-1, -1, -1, -1});
    const int64_t C = a->shape.back();
    return {a, a->size() / C, C};
}

// An optional operand shaped like x (residual, add): null when None.
ArrayPtr optional_like(const py::object& obj, const char* name, const Act& x) {
    return obj.is_none() ? nullptr : require_f32(obj, name, dims_of(*x.a));
}

const float* f32_or_null(const ArrayPtr& a) { return a ? a->f32() : nullptr; }

py::tuple forward_train(const py::object& x_, const py::object& gamma_, const py::object& beta_,
                        const py::object& rm_, const py::object& rv_, double momentum, double eps,
                        bool relu, const py::object& out, const py::object& residual_,
                        const py::object& mean_out, const py::object& rstd_out) {
    Act x = require_act(x_, "x");
    ArrayPtr residual = optional_like(residual_, "residual", x);
    const Dims c{x.C};
    auto [gamma, beta, rm, rv] = require_bn_vectors(require_f32, gamma_, beta_, rm_, rv_, x.C, true);
    require_unit_interval(momentum, "momentum");
    require_eps(eps);
    require_bn_batch(x.M, x.a->shape);
    ArrayPtr y = output(out, "out", dims_of(*x.a));
    ArrayPtr mean = output(mean_out, "mean_out", c);
    ArrayPtr rstd = output(rstd_out, "rstd_out", c);
    rc::py_checks::require_bn_forward_disjoint(y, x.a, residual, gamma, beta, rm, rv, true, mean,
                                               rstd);
    {
        py::gil_scoped_release nogil;
        rc::cuda::batch_norm_forward_train(x.a->f32(), f32_or_null(residual), gamma->f32(),
                                           beta->f32(), rm->f32(), rv->f32(), y->f32(),
                                           mean->f32(), rstd->f32(), x.M, x.C, momentum, eps, relu,
                                           stream());
    }
    return py::make_tuple(y, mean, rstd);
}

ArrayPtr forward_eval(const py::object& x_, const py::object& gamma_, const py::object& beta_,
                      const py::object& rm_, const py::object& rv_, double eps, bool relu,
                      const py::object& out, const py::object& residual_,
                      const py::object& mean_out, const py::object& rstd_out) {
    Act x = require_act(x_, "x");
    ArrayPtr residual = optional_like(residual_, "residual", x);
    const Dims c{x.C};
    auto [gamma, beta, rm, rv] = require_bn_vectors(require_f32, gamma_, beta_, rm_, rv_, x.C, false);
    require_eps(eps);
    ArrayPtr y = output(out, "out", dims_of(*x.a));
    ArrayPtr mean = mean_out.is_none() ? nullptr : output(mean_out, "mean_out", c);
    ArrayPtr rstd = rstd_out.is_none() ? nullptr : output(rstd_out, "rstd_out", c);
    rc::py_checks::require_bn_forward_disjoint(y, x.a, residual, gamma, beta, rm, rv, false, mean,
                                               rstd);
    py::gil_scoped_release nogil;
    rc::cuda::batch_norm_forward_eval(x.a->f32(), f32_or_null(residual), gamma->f32(), beta->f32(),
                                      rm->f32(), rv->f32(), y->f32(), mean ? mean->f32() : nullptr,
                                      rstd ? rstd->f32() : nullptr, x.M, x.C, eps, relu, stream());
    return y;
}

py::tuple backward(const py::object& dy_, const py::object& x_, const py::object& gamma_,
                   const py::object& mean_, const py::object& rstd_, const py::object& beta_,
                   bool relu, bool train, const py::object& out, const py::object& add_,
                   const py::object& dgamma_out, const py::object& dbeta_out) {
    Act x = require_act(x_, "x");
    ArrayPtr dy = require_f32(dy_, "dy", dims_of(*x.a));
    const Dims c{x.C};
    auto [gamma, mean, rstd, beta] =
        require_bn_backward_vectors(require_f32, gamma_, mean_, rstd_, beta_, relu, x.C);
    ArrayPtr add = optional_like(add_, "add", x);
    ArrayPtr dx = output(out, "out", dims_of(*x.a));
    ArrayPtr dgamma = output(dgamma_out, "dgamma_out", c);
    ArrayPtr dbeta = output(dbeta_out, "dbeta_out", c);
    rc::py_checks::require_bn_backward_disjoint(dx, dy, x.a, add, gamma, mean, rstd, beta, dgamma,
                                                dbeta);
    {
        py::gil_scoped_release nogil;
        rc::cuda::batch_norm_backward(dy->f32(), x.a->f32(), gamma->f32(), f32_or_null(beta),
                                      mean->f32(), rstd->f32(), f32_or_null(add), dx->f32(),
                                      dgamma->f32(), dbeta->f32(), x.M, x.C, train, stream());
    }
    return py::make_tuple(dx, dgamma, dbeta);
}

}  // namespace

void bind_batchnorm(py::module_& m) {
    rc::ops::batch_norm_forward_train(m, &forward_train);
    rc::ops::batch_norm_forward_eval(m, &forward_eval);
    rc::ops::batch_norm_backward(m, &backward);
}
