// bindings/loss.cpp: Python bindings for the loss kernels (cpp/loss.cpp).
//   softmax_cross_entropy(logits (N,K), labels int32|int64 (N,), label_smoothing=0.0,
//                         dlogits_out=None) -> (loss: float mean over batch, dlogits (N,K) / N)
#include <cmath>

#include "checks.h"
#include "loss.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

// Raises a ValueError naming the first label outside [0, K).
template <typename Label>
void check_labels(const Label* lab, int64_t N, int64_t K) {
    for (int64_t n = 0; n < N; ++n)
        if (lab[n] < 0 || (int64_t)lab[n] >= K)
            throw py::value_error("labels: labels[" + std::to_string(n) + "] = " +
                                  std::to_string((int64_t)lab[n]) + " is outside [0, K) = [0, " +
                                  std::to_string(K) + ")");
}

py::tuple xent(const py::object& logits_, const py::object& labels_, double ls,
               const py::object& out) {
    auto z = require_f32(logits_, "logits", {-1, -1});
    const int64_t N = z.shape(0), K = z.shape(1);
    py::array lab = require_int(labels_, "labels", {N});
    if (!(ls >= 0.0 && ls < 1.0))
        throw py::value_error("label_smoothing: expected a number in [0, 1), got " + std::to_string(ls));
    auto d = output_f32(out, "dlogits_out", {N, K});
    const bool i32 = lab.dtype().equal(py::dtype::of<int32_t>());
    if (i32)
        check_labels(static_cast<const int32_t*>(lab.data()), N, K);
    else
        check_labels(static_cast<const int64_t*>(lab.data()), N, K);
    double loss;
    {
        py::gil_scoped_release nogil;
        loss = i32 ? rc::softmax_cross_entropy(d.mutable_data(), z.data(),
                                               static_cast<const int32_t*>(lab.data()), N, K, ls)
                   : rc::softmax_cross_entropy(d.mutable_data(), z.data(),
                                               static_cast<const int64_t*>(lab.data()), N, K, ls);
    }
    return py::make_tuple(loss, d);
}

}  // namespace

void bind_loss(py::module_& m) {
    m.def("softmax_cross_entropy", &xent, py::arg("logits"), py::arg("labels"),
          py::arg("label_smoothing") = 0.0, py::arg("dlogits_out") = py::none(),
          "Softmax cross-entropy: logits (N,K), labels int32/int64 (N,) in [0,K) ->\n"
          "(mean loss over the batch, dlogits (N,K) already divided by N).");
}
