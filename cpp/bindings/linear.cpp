// bindings/linear.cpp: Python bindings for the linear kernels (cpp/linear.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_linear(py::module_& m) {}
