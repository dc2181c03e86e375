// bindings/loss.cpp: Python bindings for the loss kernels (cpp/loss.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_loss(py::module_& m) {}
