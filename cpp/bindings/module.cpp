// module.cpp: the _core extension module. Each op family registers its functions from its
// own bindings file (bind_<family>), so families build and evolve independently.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.h"
#include "dispatch.h"

namespace py = pybind11;

void bind_conv(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_eltwise(py::module_& m);
void bind_pool(py::module_& m);
void bind_linear(py::module_& m);
void bind_loss(py::module_& m);
void bind_optim(py::module_& m);
void bind_augment(py::module_& m);
void bind_probe(py::module_& m);
void bind_registry(py::module_& m);

#ifndef RESNET_CPP_VERSION
#define RESNET_CPP_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
    m.doc() = "resnet_cpp kernels (C++, OpenMP, AVX2/AVX-512 with runtime dispatch)";
    std::string ver = RESNET_CPP_VERSION;
    m.attr("__version__") = ver.empty() ? std::string("dev") : ver;

    m.def("detected_isa", [] { return std::string(rc::isa_name(rc::detected_isa())); },
          "Best instruction set this CPU and OS support (compiled in or not).");
    m.def("compiled_isas", [] {
        std::vector<std::string> v;
        for (rc::Isa i : rc::compiled_isas()) v.push_back(rc::isa_name(i));
        return v;
    }, "Instruction-set paths compiled into this build, scalar first.");
    m.def("active_isa", [] { return std::string(rc::isa_name(rc::active_path())); },
          "The path kernels run now: best compiled and supported path, capped by max_isa.");
    m.def("amx_status", &rc::amx_status,
          "Whether AMX tiles could run here (CPUID, XCR0, Linux permission); no kernel uses them yet.");
    m.def("max_isa", [] { return std::string(rc::isa_name(rc::max_isa())); });
    m.def("set_max_isa", [](const std::string& name) { rc::set_max_isa(rc::parse_isa(name)); },
          py::arg("isa"),
          "Cap the path: 'scalar', 'avx2', 'avx512' or 'avx512_bf16' (as RESNET_CPP_MAX_ISA).");
    m.def("set_num_threads", &rc::set_num_threads, py::arg("n"),
          "Threads used by every kernel (default: OMP_NUM_THREADS, else all cores).");
    m.def("num_threads", &rc::num_threads);
    m.def("max_num_threads", &rc::max_num_threads,
          "The largest thread count set_num_threads accepts: 4 per logical CPU.");
    if (rc::max_threads() > rc::max_num_threads() &&
        PyErr_WarnEx(PyExc_RuntimeWarning,
                     ("resnet_cpp: OMP_NUM_THREADS asks for " + std::to_string(rc::max_threads()) +
                      " threads, more than the bound of " + std::to_string(rc::max_num_threads()) +
                      " (4 per logical CPU); using " + std::to_string(rc::num_threads()))
                         .c_str(),
                     1) < 0)
        throw py::error_already_set();  // warnings turned into errors (python -W error)
#ifdef RESNET_CPP_HAVE_OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif

    // Outputs are checked against the memory before they are allocated (checks.h); what can
    // still fail is a kernel's scratch space.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::bad_alloc&) {
            PyErr_SetString(PyExc_MemoryError,
                            "out of memory for a kernel's scratch space (its arrays did fit)");
        }
    });

    bind_conv(m);
    bind_batchnorm(m);
    bind_eltwise(m);
    bind_pool(m);
    bind_linear(m);
    bind_loss(m);
    bind_optim(m);
    bind_augment(m);
    bind_probe(m);
    bind_registry(m);
}
