// bindings/batchnorm.cpp: Python bindings for the batch-norm kernels (cpp/batchnorm.cpp).
// Activations are NHWC (N,H,W,C) or already-flattened (M,C); per-channel vectors are (C,).
// The last five (stats/finalize/apply, backward reduce/apply) are the CPU's halves of the
// training passes, for synchronized BN across processes (resnet_cpp.distributed).
#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

#include "checks.h"
#include "batchnorm.h"
#include "ops.h"

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


// The forward's y is written element by element after x and residual are read: it may be
// either of them, but must not share memory with them otherwise, nor with the (C,) vectors.
void require_elementwise_out(const py::array_t<float>& y, const Act& x,
                             const py::array_t<float>& residual, std::initializer_list<Named> vectors) {
    require_disjoint_or_same(y, "out", x.a, "x");
    require_disjoint_or_same(y, "out", residual, "residual");
    require_disjoint(y, "out", vectors);
}

// dx is written after each element of dy and x is read (it may be either), never over add
// or the (C,) vectors.
void require_backward_out(const py::array_t<float>& dx, const py::array_t<float>& dy, const Act& x,
                          std::initializer_list<Named> others) {
    require_disjoint_or_same(dx, "out", dy, "dy");
    require_disjoint_or_same(dx, "out", x.a, "x");
    require_disjoint(dx, "out", others);
}

// A count of values summed over (one process's M, or the sum over processes).
void require_count(double count, const char* name, double lo) {
    if (!(count > lo && std::isfinite(count)))
        throw py::value_error(std::string(name) + ": expected a finite number > " +
                              std::to_string(lo) + ", got " + std::to_string(count));
}

// A training backward's operands, checked: x, dy shaped like x, per-channel gamma, mean,
// rstd and, with relu, beta (bp: nullptr without).
struct Bwd {
    Act x;
    py::array_t<float> dy, gamma, mean, rstd, beta;
    const float* bp = nullptr;
};

Bwd backward_operands(py::handle dy_, py::handle x_, py::handle gamma_, py::handle mean_,
                      py::handle rstd_, const py::object& beta_, bool relu) {
    Bwd b;
    b.x = require_act(x_, "x");
    b.dy = require_f32(dy_, "dy", b.x.dims);
    std::tie(b.gamma, b.mean, b.rstd, b.beta) =
        require_bn_backward_vectors(require_f32, gamma_, mean_, rstd_, beta_, relu, b.x.C);
    b.bp = relu ? cptr(b.beta) : nullptr;
    return b;
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
            require_bn_forward_disjoint(y, x.a, residual, gamma, beta, rm, rv, true, mean, rstd);
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
            require_bn_forward_disjoint(y, x.a, residual, gamma, beta, rm, rv, false,
                                        mean ? Span(*mean) : Span(), rstd ? Span(*rstd) : Span());
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
            Bwd b = backward_operands(dy_, x_, gamma_, mean_, rstd_, beta_, relu);
            const Act& x = b.x;
            const Dims c{x.C};
            py::array_t<float> add;
            const float* ap = optional_like(add_, "add", x, add);
            auto dx = output_f32(out, "out", x.dims);
            auto dgamma = output_f32(dgamma_out, "dgamma_out", c);
            auto dbeta = output_f32(dbeta_out, "dbeta_out", c);
            require_bn_backward_disjoint(dx, b.dy, x.a, add, b.gamma, b.mean, b.rstd, b.beta,
                                         dgamma, dbeta);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_backward(cptr(b.dy), cptr(x.a), cptr(b.gamma), b.bp, cptr(b.mean),
                                        cptr(b.rstd), relu, ap, ptr(dx), ptr(dgamma), ptr(dbeta),
                                        x.M, x.C, train);
            }
            return py::make_tuple(dx, dgamma, dbeta);
        });

    // The halves of the training passes (synchronized BN sums the reductions in between).
    m.def(
        "batch_norm_stats",
        [](py::handle x_, py::handle pivot_) {
            Act x = require_act(x_, "x");
            auto pivot = require_f32(pivot_, "pivot", {x.C});
            py::array_t<double> s1(x.C), s2(x.C);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_stats(cptr(x.a), cptr(pivot), s1.mutable_data(), s2.mutable_data(),
                                     x.M, x.C);
            }
            return py::make_tuple(s1, s2);
        },
        py::arg("x"), py::arg("pivot"),
        "Per-channel sums over x (N,H,W,C) or (M,C): returns (s1, s2), float64 (C,), of\n"
        "d = x - pivot and d**2. A pivot near the mean (running_mean) avoids cancellation.");

    m.def(
        "batch_norm_finalize",
        [](py::handle s1_, py::handle s2_, py::handle pivot_, double count, py::handle rm_,
           py::handle rv_, double momentum, double eps) {
            auto pivot = require_f32(pivot_, "pivot", {-1});
            const Dims c{pivot.shape(0)};
            auto s1 = require_f64(s1_, "s1", c);
            auto s2 = require_f64(s2_, "s2", c);
            auto rm = require_f32(rm_, "running_mean", c, true);
            auto rv = require_f32(rv_, "running_var", c, true);
            require_count(count, "count", 1.0);
            require_disjoint(rm, "running_mean", {{s1, "s1"}, {s2, "s2"}, {pivot, "pivot"},
                                                  {rv, "running_var"}});
            require_disjoint(rv, "running_var", {{s1, "s1"}, {s2, "s2"}, {pivot, "pivot"}});
            require_unit_interval(momentum, "momentum");
            require_eps(eps);
            py::array_t<float> mean(c[0]), rstd(c[0]);
            rc::batch_norm_finalize(s1.data(), s2.data(), cptr(pivot), count, ptr(rm), ptr(rv),
                                    ptr(mean), ptr(rstd), c[0], momentum, eps);
            return py::make_tuple(mean, rstd);
        },
        py::arg("s1"), py::arg("s2"), py::arg("pivot"), py::arg("count"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("momentum") = 0.1,
        py::arg("eps") = 1e-5,
        "From batch_norm_stats sums over `count` values (> 1, e.g. summed over processes):\n"
        "returns (mean, rstd) float32 (C,) and updates running_mean/running_var in place, as\n"
        "batch_norm_forward_train does. pivot must not share memory with running_mean (pass a copy).");

    m.def(
        "batch_norm_apply",
        [](py::handle x_, py::handle gamma_, py::handle beta_, py::handle mean_, py::handle rstd_,
           bool relu, py::object out, py::object residual_) {
            Act x = require_act(x_, "x");
            py::array_t<float> residual;
            const float* rp = optional_like(residual_, "residual", x, residual);
            const Dims c{x.C};
            auto gamma = require_f32(gamma_, "gamma", c);
            auto beta = require_f32(beta_, "beta", c);
            auto mean = require_f32(mean_, "mean", c);
            auto rstd = require_f32(rstd_, "rstd", c);
            auto y = output_f32(out, "out", x.dims);
            require_elementwise_out(y, x, residual, {{gamma, "gamma"}, {beta, "beta"},
                                                     {mean, "mean"}, {rstd, "rstd"}});
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_apply(cptr(x.a), rp, cptr(gamma), cptr(beta), cptr(mean),
                                     cptr(rstd), ptr(y), x.M, x.C, relu);
            }
            return y;
        },
        py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("mean"), py::arg("rstd"),
        py::arg("relu") = false, py::arg("out") = py::none(), py::arg("residual") = py::none(),
        "y = relu?((x - mean) * gamma * rstd + beta [+ residual]) over x (N,H,W,C) or (M,C):\n"
        "the second pass of batch_norm_forward_train, bit for bit.");

    m.def(
        "batch_norm_backward_reduce",
        [](py::handle dy_, py::handle x_, py::handle gamma_, py::handle mean_, py::handle rstd_,
           py::object beta_, bool relu) {
            Bwd b = backward_operands(dy_, x_, gamma_, mean_, rstd_, beta_, relu);
            const Act& x = b.x;
            py::array_t<double> sdy(x.C), sdyx(x.C);
            py::array_t<float> dgamma(x.C), dbeta(x.C);
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_backward_reduce(cptr(b.dy), cptr(x.a), cptr(b.gamma), b.bp,
                                               cptr(b.mean), cptr(b.rstd), relu, sdy.mutable_data(),
                                               sdyx.mutable_data(), ptr(dgamma), ptr(dbeta), x.M,
                                               x.C);
            }
            return py::make_tuple(sdy, sdyx, dgamma, dbeta);
        },
        py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"),
        py::arg("beta") = py::none(), py::arg("relu") = false,
        "First pass of the training backward: returns (sdy, sdyx) float64 (C,), the sums of\n"
        "dy' and dy' * (x - mean) (dy' = dy ReLU-masked as in batch_norm_backward), and\n"
        "(dgamma, dbeta) float32 (C,) from them.");

    m.def(
        "batch_norm_backward_apply",
        [](py::handle dy_, py::handle x_, py::handle gamma_, py::handle mean_, py::handle rstd_,
           py::handle sdy_, py::handle sdyx_, double count, py::object beta_, bool relu,
           py::object out, py::object add_) {
            Bwd b = backward_operands(dy_, x_, gamma_, mean_, rstd_, beta_, relu);
            const Act& x = b.x;
            auto sdy = require_f64(sdy_, "sdy", {x.C});
            auto sdyx = require_f64(sdyx_, "sdyx", {x.C});
            require_count(count, "count", 0.0);
            py::array_t<float> add;
            const float* ap = optional_like(add_, "add", x, add);
            auto dx = output_f32(out, "out", x.dims);
            require_backward_out(dx, b.dy, x, {{add, "add"}, {b.gamma, "gamma"}, {b.mean, "mean"},
                                               {b.rstd, "rstd"}, {b.beta, "beta"}});
            {
                py::gil_scoped_release nogil;
                rc::batch_norm_backward_apply(cptr(b.dy), cptr(x.a), cptr(b.gamma), b.bp,
                                              cptr(b.mean), cptr(b.rstd), relu, ap, sdy.data(),
                                              sdyx.data(), count, ptr(dx), x.M, x.C);
            }
            return dx;
        },
        py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("rstd"),
        py::arg("sdy"), py::arg("sdyx"), py::arg("count"), py::arg("beta") = py::none(),
        py::arg("relu") = false, py::arg("out") = py::none(), py::arg("add") = py::none(),
        "Second pass of the training backward: dx from batch_norm_backward_reduce's sums over\n"
        "`count` values (summed over processes for synchronized BN); add and out as in\n"
        "batch_norm_backward.");
}

