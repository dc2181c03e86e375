// bindings/optim.cpp: Python bindings for the optim kernels (cpp/optim.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_optim(py::module_& m) {}
