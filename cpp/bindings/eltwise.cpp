// bindings/eltwise.cpp: Python bindings for the eltwise kernels (cpp/eltwise.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_eltwise(py::module_& m) {}
