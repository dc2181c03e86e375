// bindings/optim.cpp: Python bindings for the optimizer kernels (cpp/optim.cpp). In place:
//   sgd_step(param, grad, momentum_buf or None, lr, momentum, weight_decay, nesterov)
//   adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled)
// Arrays: float32, C-contiguous, any shape (all the same); param/buffers must be writeable.
// lr (and Adam's step) may be one-element float32 (int64) arrays, read when the op runs.
#include "checks.h"
#include "ops.h"
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

// A hyperparameter: a number, or a one-element array of `dtype_name` whose value is read now.
template <typename T>
double scalar_arg(const py::object& obj, const char* name, const char* dtype_name) {
    if (!py::isinstance<py::array>(obj)) return require_number(obj, name, dtype_name);
    auto a = py::reinterpret_borrow<py::array>(obj);
    require_one_value(name, Dims(a.shape(), a.shape() + a.ndim()));
    check_dtype(name, a.dtype().equal(py::dtype::of<T>()), dtype_name, py::str(a.dtype()));
    return (double)*static_cast<const T*>(a.data());
}

void sgd(const py::object& param_, const py::object& grad_, const py::object& buf_,
         const py::object& lr_, double momentum, double weight_decay, bool nesterov) {
    Dims dims;
    auto p = require_param(param_, dims);
    auto g = require_f32(grad_, "grad", dims);
    const double lr = scalar_arg<float>(lr_, "lr", "float32");
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
          const py::object& v_, const py::object& step_, const py::object& lr_, double beta1,
          double beta2, double eps, double weight_decay, bool decoupled) {
    Dims dims;
    auto p = require_param(param_, dims);
    auto g = require_f32(grad_, "grad", dims);
    auto m = require_f32(m_, "m", dims, /*writable=*/true);
    auto v = require_f32(v_, "v", dims, /*writable=*/true);
    // The written buffers (param, m, v) share no memory with each other or with grad.
    require_disjoint(p, "param", g, "grad");
    require_disjoint(m, "m", {{p, "param"}, {g, "grad"}});
    require_disjoint(v, "v", {{p, "param"}, {g, "grad"}, {m, "m"}});
    if (!py::isinstance<py::array>(step_)) require_int_step(step_);
    const double step = scalar_arg<int64_t>(step_, "step", "int64");
    require_step(step);
    const double lr = scalar_arg<float>(lr_, "lr", "float32");
    require_finite_nonneg(lr, "lr");
    require_unit(beta1, "beta1");
    require_unit(beta2, "beta2");
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite number > 0, got " + std::to_string(eps));
    require_finite_nonneg(weight_decay, "weight_decay");
    const int64_t n = p.size();
    py::gil_scoped_release nogil;
    rc::adam_step(p.mutable_data(), g.data(), m.mutable_data(), v.mutable_data(), n, (int64_t)step, lr,
                  beta1, beta2, eps, weight_decay, decoupled);
}

}  // namespace

void bind_optim(py::module_& m) {
    rc::ops::sgd_step(m, &sgd);
    rc::ops::adam_step(m, &adam);
}
