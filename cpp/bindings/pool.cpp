// bindings/pool.cpp: Python bindings for the pool kernels (cpp/pool.cpp).
#include "checks.h"

namespace py = pybind11;

void bind_pool(py::module_& m) {}
