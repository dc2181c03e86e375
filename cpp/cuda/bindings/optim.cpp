// bindings/optim.cpp (_cuda): in-place SGD and Adam/AdamW updates (cpp/cuda/optim.cu), with the
// contract of cpp/bindings/optim.cpp. lr and Adam's step may be one-element device arrays,
// read by the kernel when it runs: a replayed CUDA graph then follows the schedule.
#include <cmath>

#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;
using rc::py_checks::require_finite_nonneg;
using rc::py_checks::require_unit;

namespace {

// A hyperparameter given as a number (checked now, like _core does) or as a one-element
// device array (read at run time, unchecked: the kernel reads it while it writes the
// buffers, so none of them may overlap it). Returns the array, null for a number.
ArrayPtr scalar_or_device(const py::object& obj, const char* name, DType t, double& value,
                          void (*check)(double, const char*)) {
    if (py::isinstance<DeviceArray>(obj)) {
        rc::py_checks::require_one_value(name, as_array(obj, name)->shape);
        value = 0.0;
        return require(obj, name, t, as_array(obj, name)->shape);
    }
    value = rc::py_checks::require_number(obj, name, dtype_name(t));
    check(value, name);
    return nullptr;
}

template <typename T>
const T* device_ptr(const ArrayPtr& a) { return a ? static_cast<const T*>(a->ptr) : nullptr; }

void check_step(double v, const char*) { rc::py_checks::require_step(v); }

ArrayPtr require_param(const py::object& obj) {
    ArrayPtr a = as_array(obj, "param");
    return require_f32(obj, "param", rc::py_checks::any_shape("param", a->shape.size()), true);
}

void sgd(const py::object& p_, const py::object& g_, const py::object& buf_, const py::object& lr_,
         double momentum, double weight_decay, bool nesterov) {
    ArrayPtr p = require_param(p_);
    ArrayPtr g = require_f32(g_, "grad", dims_of(*p));
    double lr = 0.0;
    ArrayPtr lr_dev = scalar_or_device(lr_, "lr", DType::f32, lr, require_finite_nonneg);
    require_finite_nonneg(momentum, "momentum");
    require_finite_nonneg(weight_decay, "weight_decay");
    if (nesterov && momentum == 0.0)
        throw py::value_error("nesterov: Nesterov momentum requires momentum > 0");
    ArrayPtr buf;
    if (momentum > 0.0) {
        if (buf_.is_none())
            throw py::value_error("momentum_buf: required when momentum > 0 (start with zeros)");
        buf = require_f32(buf_, "momentum_buf", dims_of(*p), true);
    } else if (!buf_.is_none()) {
        require_f32(buf_, "momentum_buf", dims_of(*p));
    }
    // The written buffers (param, momentum_buf) share no memory with each other, grad or lr.
    require_disjoint(p, "param", {{g, "grad"}, {lr_dev, "lr"}});
    require_disjoint(buf, "momentum_buf", {{p, "param"}, {g, "grad"}, {lr_dev, "lr"}});
    py::gil_scoped_release nogil;
    rc::cuda::sgd_step(p->f32(), g->f32(), buf ? buf->f32() : nullptr, p->size(), lr,
                       device_ptr<float>(lr_dev), momentum, weight_decay, nesterov, stream());
}

void adam(const py::object& p_, const py::object& g_, const py::object& m_, const py::object& v_,
          const py::object& step_, const py::object& lr_, double beta1, double beta2, double eps,
          double weight_decay, bool decoupled) {
    ArrayPtr p = require_param(p_);
    ArrayPtr g = require_f32(g_, "grad", dims_of(*p));
    ArrayPtr m = require_f32(m_, "m", dims_of(*p), true);
    ArrayPtr v = require_f32(v_, "v", dims_of(*p), true);
    double step = 0.0, lr = 0.0;
    if (!py::isinstance<DeviceArray>(step_)) rc::py_checks::require_int_step(step_);
    ArrayPtr step_dev = scalar_or_device(step_, "step", DType::i64, step, check_step);
    ArrayPtr lr_dev = scalar_or_device(lr_, "lr", DType::f32, lr, require_finite_nonneg);
    // The written buffers (param, m, v) share no memory with each other, grad, step or lr.
    require_disjoint(p, "param", {{g, "grad"}, {step_dev, "step"}, {lr_dev, "lr"}});
    require_disjoint(m, "m", {{p, "param"}, {g, "grad"}, {step_dev, "step"}, {lr_dev, "lr"}});
    require_disjoint(v, "v", {{p, "param"}, {g, "grad"}, {m, "m"}, {step_dev, "step"}, {lr_dev, "lr"}});
    require_unit(beta1, "beta1");
    require_unit(beta2, "beta2");
    if (!(eps > 0.0 && std::isfinite(eps)))
        throw py::value_error("eps: expected a finite number > 0, got " + std::to_string(eps));
    require_finite_nonneg(weight_decay, "weight_decay");
    py::gil_scoped_release nogil;
    rc::cuda::adam_step(p->f32(), g->f32(), m->f32(), v->f32(), p->size(), (int64_t)step,
                        device_ptr<int64_t>(step_dev), lr, device_ptr<float>(lr_dev), beta1, beta2, eps, weight_decay, decoupled, stream());
}

}  // namespace

void bind_optim(py::module_& m) {
    rc::ops::sgd_step(m, &sgd);
    rc::ops::adam_step(m, &adam);
}
