// bindings/optim.cpp: Python bindings for the optimizer kernels (cpp/optim.cpp). In place:
//   sgd_step(param, grad, momentum_buf or None, lr, momentum, weight_decay, nesterov)
//   adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled)
// Arrays: float32, C-contiguous, any shape (all the same); param/buffers must be writeable.
#include <cfloat>
#include <cmath>
#include <cstdio>

#include "checks.h"
#include "optim.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// The param array (any shape), checked writeable; its shape is what the others must match.
py::array_t<float> require_param(const py::object& obj, Dims& dims) {
    if (py::isinstance<py::array>(obj)) {
        auto a = py::reinterpret_borrow<py::array>(obj);
        dims.assign(a.shape(), a.shape() + a.ndim());
    }
    return require_f32(obj, "param", dims, /*writable=*/true);
}

// The kernels compute in float32: a value past FLT_MAX would become inf there.
void require_finite_nonneg(double v, const char* name) {
    if (!(v >= 0.0 && v <= FLT_MAX)) {
        char got[32];
        std::snprintf(got, sizeof got, "%g", v);
        throw py::value_error(std::string(name) + ": expected a number >= 0, finite in float32 "
                              "(<= 3.4e38), got " + got);
    }
}

void require_unit(double v, const char* name) {
    if (!(v >= 0.0 && v < 1.0))
        throw py::value_error(std::string(name) + ": expected a number in [0, 1), got " + std::to_string(v));
}

void sgd(const py::object& param_, const py::object& grad_, const py::object& buf_, double lr,
         double momentum, double weight_decay, bool nesterov) {
    Dims dims;
    auto p = require_param(param_, dims);
    auto g = require_f32(grad_, "grad", dims);
    require_finite_nonneg(lr, "lr");
    require_finite_nonneg(momentum, "momentum");
    require_finite_nonneg(weight_decay, "weight_decay");
    if (nesterov && momentum == 0.0)
        throw py::value_error("nesterov: Nesterov momentum requires momentum > 0");
    py::array_t<float> buf;
    if (momentum > 0.0) {
        if (buf_.is_none())
            throw py::value_error("momentum_buf: required when momentum > 0 (start with zeros)");
        buf = require_f32(buf_, "momentum_buf", dims, /*writable=*/true);
    } else if (!buf_.is_none()) {
        require_f32(buf_, "momentum_buf", dims);
    }
    // The written buffers (param, momentum_buf) share no memory with each other or with grad.
    require_disjoint(p, "param", g, "grad");
    require_disjoint(buf, "momentum_buf", {{p, "param"}, {g, "grad"}});
    const int64_t n = p.size();
    float* bp = momentum > 0.0 ? buf.mutable_data() : nullptr;
    py::gil_scoped_release nogil;
    rc::sgd_step(p.mutable_data(), g.data(), bp, n, (float)lr, (float)momentum,
                 (float)weight_decay, nesterov);
}

void adam(const py::object& param_, const py::object& grad_, const py::object& m_,
          const py::object& v_, int64_t step, double lr, double beta1, double beta2, double eps,
          double weight_decay, bool decoupled) {
    Dims dims;
    auto p = require_param(param_, dims);
    auto g = require_f32(grad_, "grad", dims);
    auto m = require_f32(m_, "m", dims, /*writable=*/true);
    auto v = require_f32(v_, "v", dims, /*writable=*/true);
    // The written buffers (param, m, v) share no memory with each other or with grad.
    require_disjoint(p, "param", g, "grad");
    require_disjoint(m, "m", {{p, "param"}, {g, "grad"}});
    require_disjoint(v, "v", {{p, "param"}, {g, "grad"}, {m, "m"}});
    if (step < 1) throw py::value_error("step: expected an integer >= 1, got " + std::to_string(step));
    require_finite_nonneg(lr, "lr");
    require_unit(beta1, "beta1");
    require_unit(beta2, "beta2");
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite number > 0, got " + std::to_string(eps));
    require_finite_nonneg(weight_decay, "weight_decay");
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    rc::adam_step(p.mutable_data(), g.data(), m.mutable_data(), v.mutable_data(), n, step, lr,
                  beta1, beta2, eps, weight_decay, decoupled);
}

}  // namespace

void bind_optim(py::module_& m) {
    m.def("sgd_step", &sgd, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"),
          py::arg("lr"), py::arg("momentum") = 0.0, py::arg("weight_decay") = 0.0,
          py::arg("nesterov") = false,
          "In-place SGD step (PyTorch semantics): g = grad + wd*p; buf = momentum*buf + g;\n"
          "g = g + momentum*buf if nesterov else buf; p -= lr*g. momentum_buf (zeros at start)\n"
          "is required when momentum > 0.");
    m.def("adam_step", &adam, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("step"), py::arg("lr"), py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
          py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("decoupled") = false,
          "In-place Adam (decoupled=False) or AdamW (decoupled=True) step with bias correction;\n"
          "step counts from 1.");
}
