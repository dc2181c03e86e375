// bindings/loss.cpp: Python bindings for the loss kernels (cpp/loss.cpp).
//   softmax_cross_entropy(logits (N,K), labels int32|int64 (N,), label_smoothing=0.0,
//                         dlogits_out=None) -> (loss: float mean over batch, dlogits (N,K) / N)
#include "checks.h"
#include "loss.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

py::tuple xent(const py::object& logits_, const py::object& labels_, double ls,
               const py::object& out) {
    auto z = require_f32(logits_, "logits", {-1, -1});
    const int64_t N = z.shape(0), K = z.shape(1);
    // The kernel indexes rows with the labels: it reads this checked copy, never the array.
    const std::vector<int64_t> labels = copy_indices(labels_, "labels", N, K, "K");
    if (!(ls >= 0.0 && ls < 1.0))
        throw py::value_error("label_smoothing: expected a number in [0, 1), got " + std::to_string(ls));
    auto d = output_f32(out, "dlogits_out", {N, K});
    // Each row of logits is read before its gradient is written over it.
    require_disjoint_or_same(d, "dlogits_out", z, "logits");
    double loss;
    {
        py::gil_scoped_release nogil;
        loss = rc::softmax_cross_entropy(d.mutable_data(), z.data(), labels.data(), N, K, ls);
    }
    return py::make_tuple(loss, d);
}

}  // namespace

void bind_loss(py::module_& m) {
    m.def("softmax_cross_entropy", &xent, py::arg("logits"), py::arg("labels"),
          py::arg("label_smoothing") = 0.0, py::arg("dlogits_out") = py::none(),
          "Softmax cross-entropy: logits (N,K), labels int32/int64 (N,) in [0,K) ->\n"
          "(mean loss over the batch, dlogits (N,K) already divided by N). dlogits_out may be\n"
          "logits itself (the gradient overwrites them).");
}
