// bindings/probe.cpp: the FMA peak probe (cpp/probe.cpp), for the benchmarks.
#include "probe.h"

#include "checks.h"

namespace py = pybind11;

void bind_probe(py::module_& m) {
    m.def("fma_peak_gflops", [](int64_t iters) {
        rc::py_checks::require_range(iters, "iters", 1, int64_t(1) << 40);
        py::gil_scoped_release nogil;
        return rc::fma_peak_gflops(iters);
    }, py::arg("iters") = 200000000,
       "Measured FP32 FMA peak (GFLOP/s) of the active ISA path on num_threads() threads.");
}
