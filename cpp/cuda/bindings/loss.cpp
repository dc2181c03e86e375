// bindings/loss.cpp (_cuda): softmax cross-entropy (cpp/cuda/loss.cu), with the contract of
// cpp/bindings/loss.cpp. The loss stays on the device (a 0-d DeviceArray); checking the
// labels is the one step that waits for the device, so check_labels=False skips it.
#include "bindings/ops.h"
#include "device_array.h"
#include "kernels.h"

using namespace rc::cuda_bind;

namespace {

py::tuple xent(const py::object& logits_, const py::object& labels_, double ls,
               const py::object& dlogits_out, const py::object& loss_out, bool check_labels) {
    ArrayPtr z = require_f32(logits_, "logits", {-1, -1});
    const int64_t N = z->shape[0], K = z->shape[1];
    ArrayPtr lab = as_array(labels_, "labels");
    rc::py_checks::check_dtype("labels", lab->dtype != DType::f32, "int32 or int64",
                               dtype_name(lab->dtype));
    lab = require(labels_, "labels", lab->dtype, {N});
    rc::py_checks::require_unit(ls, "label_smoothing");
    ArrayPtr d = output(dlogits_out, "dlogits_out", {N, K});
    // Each row of logits is read before its gradient is written over it. The kernel reads the
    // labels on the device (_core reads a copy): no output may overlap them.
    require_disjoint_or_same(d, "dlogits_out", z, "logits");
    require_disjoint(d, "dlogits_out", lab, "labels");
    ArrayPtr loss = output(loss_out, "loss_out", {});
    require_disjoint(loss, "loss_out", {{z, "logits"}, {d, "dlogits_out"}, {lab, "labels"}});
    int32_t bad_row = rc::cuda::kNoBadRow;
    {
        py::gil_scoped_release nogil;
        const cudaStream_t s = stream();
        rc::cuda::Scratch bad(sizeof(int32_t));
        rc::cuda::softmax_cross_entropy(z->f32(), lab->ptr, lab->dtype == DType::i64, N, K, ls,
                                        d->f32(), loss->f32(), bad.as<int32_t>(), s);
        if (check_labels) {
            RC_CUDA_CHECK(cudaMemcpyAsync(&bad_row, bad.as<int32_t>(), sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, s));
            rc::cuda::host_sync(s);
        }
    }
    if (check_labels && bad_row != rc::cuda::kNoBadRow)
        throw py::value_error("labels: labels[" + std::to_string(bad_row) +
                              "] is outside [0, K) = [0, " + std::to_string(K) + ")");
    return py::make_tuple(loss, d);
}

}  // namespace

void bind_loss(py::module_& m) { rc::ops::softmax_cross_entropy(m, &xent); }
