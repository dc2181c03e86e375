// bindings/augment.cpp: Python bindings for the augment kernels (cpp/augment.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_augment(py::module_& m) {}
