// bindings/loss.cpp: Python bindings for the loss kernels (cpp/loss.cpp).
//   softmax_cross_entropy(logits (N,K), labels int32|int64 (N,), label_smoothing=0.0,
//                         dlogits_out=None, loss_out=None, check_labels=True)
//       -> (loss: float mean over batch (or loss_out), dlogits (N,K) / N)
#include <optional>

#include "checks.h"
#include "ops.h"
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
               const py::object& out, const py::object& loss_out, bool check) {
    auto z = require_f32(logits_, "logits", {-1, -1});
    const int64_t N = z.shape(0), K = z.shape(1);
    py::array lab = require_int(labels_, "labels", {N});
    require_unit(ls, "label_smoothing");
    auto d = output_f32(out, "dlogits_out", {N, K});
    std::optional<py::array_t<float>> loss_arr;
    if (!loss_out.is_none()) loss_arr = output_f32(loss_out, "loss_out", {});
    const bool i32 = lab.dtype().equal(py::dtype::of<int32_t>());
    if (check && i32) check_labels(static_cast<const int32_t*>(lab.data()), N, K);
    if (check && !i32) check_labels(static_cast<const int64_t*>(lab.data()), N, K);
    double loss;
    {
        py::gil_scoped_release nogil;
        loss = i32 ? rc::softmax_cross_entropy(d.mutable_data(), z.data(),
                                               static_cast<const int32_t*>(lab.data()), N, K, ls)
                   : rc::softmax_cross_entropy(d.mutable_data(), z.data(),
                                               static_cast<const int64_t*>(lab.data()), N, K, ls);
    }
    if (!loss_arr) return py::make_tuple(loss, d);
    *ptr(*loss_arr) = (float)loss;
    return py::make_tuple(*loss_arr, d);
}

}  // namespace

void bind_loss(py::module_& m) { rc::ops::softmax_cross_entropy(m, &xent); }
