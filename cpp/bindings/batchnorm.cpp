// bindings/batchnorm.cpp: Python bindings for the batchnorm kernels (cpp/batchnorm.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_batchnorm(py::module_& m) {}
