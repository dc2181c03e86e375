// bindings/conv.cpp: Python bindings for the conv kernels (cpp/conv.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_conv(py::module_& m) {}
