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

py::tuple xent(const py::object& logits_, const py::object& labels_, double ls,
               const py::object& out, const py::object& loss_out, bool check) {
    auto z = require_f32(logits_, "logits", {-1, -1});
    const int64_t N = z.shape(0), K = z.shape(1);
    // The kernel indexes rows with the labels: it reads this copy, never the array (another
    // thread may change that once the GIL is released). check=False leaves the range to the
    // kernel, which gives a bad row NaNs.
    const std::vector<int64_t> labels = copy_indices(labels_, "labels", N, check ? K : -1, "K");
    require_unit(ls, "label_smoothing");
    auto d = output_f32(out, "dlogits_out", {N, K});
    // Each row of logits is read before its gradient is written over it.
    require_disjoint_or_same(d, "dlogits_out", z, "logits");
    std::optional<py::array_t<float>> loss_arr;
    if (!loss_out.is_none()) {
        loss_arr = output_f32(loss_out, "loss_out", {});
        require_disjoint(*loss_arr, "loss_out", {{z, "logits"}, {d, "dlogits_out"}});
    }
    double loss;
    {
        py::gil_scoped_release nogil;
        loss = rc::softmax_cross_entropy(d.mutable_data(), z.data(), labels.data(), N, K, ls);
    }
    if (!loss_arr) return py::make_tuple(loss, d);
    *ptr(*loss_arr) = (float)loss;
    return py::make_tuple(*loss_arr, d);
}

}  // namespace

void bind_loss(py::module_& m) { rc::ops::softmax_cross_entropy(m, &xent); }
