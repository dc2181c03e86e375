// bindings/registry.cpp: which implementation each op runs (cpp/registry.h): the lists, and
// the entry a call of a given shape runs under the current ISA cap and settings.
#include "registry.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

namespace py = pybind11;

namespace {

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none" : out;
}

// The shape values in `row.shape` order, from positional and keyword arguments.
std::vector<int64_t> shape_values(const rc::OpImpls& row, const py::args& args,
                                  const py::kwargs& kwargs) {
    const std::vector<std::string>& names = row.shape;
    const std::string takes = row.op + " takes " + joined(names);
    if (args.size() > names.size())
        throw py::type_error("shape: " + takes + ", got " + std::to_string(args.size()) +
                             " positional values");
    std::vector<py::object> given(names.size());
    for (size_t i = 0; i < args.size(); ++i) given[i] = args[i];
    for (const auto& kv : kwargs) {
        const std::string key = py::str(kv.first);
        size_t i = 0;
        while (i < names.size() && names[i] != key) ++i;
        if (i == names.size()) throw py::type_error(key + ": not a shape argument (" + takes + ")");
        if (given[i]) throw py::type_error(key + ": given twice");
        given[i] = py::reinterpret_borrow<py::object>(kv.second);
    }
    std::vector<int64_t> values;
    for (size_t i = 0; i < names.size(); ++i) {
        if (!given[i]) throw py::type_error(names[i] + ": missing (" + takes + ")");
        if (!py::isinstance<py::int_>(given[i]) || py::isinstance<py::bool_>(given[i]))
            throw py::type_error(names[i] + ": expected an integer, got " +
                                 std::string(py::str(py::type::of(given[i]).attr("__name__"))));
        values.push_back(given[i].cast<int64_t>());
    }
    return values;
}

}  // namespace

void bind_registry(py::module_& m) {
    m.def(
        "impl_ops",
        [] {
            py::dict ops;
            for (const rc::OpImpls& row : rc::all_ops()) ops[py::str(row.op)] = row.shape;
            return ops;
        },
        "Every op with an implementation list: {op: the shape arguments impl_name takes}.");
    m.def(
        "impl_list", [](const std::string& op) { return rc::find_op(op).impls; }, py::arg("op"),
        "op's implementations compiled in, best first and the scalar one last, as 'name:isa'; "
        "a call runs the first that the ISA cap allows and that applies to it.");
    m.def(
        "impl_name",
        [](const std::string& op, const py::args& args, const py::kwargs& kwargs) {
            const rc::OpImpls& row = rc::find_op(op);  // std::invalid_argument -> ValueError
            return row.running(shape_values(row, args, kwargs));
        },
        py::arg("op"),
        "The implementation ('name:isa') a call of op runs now (ISA cap, conv algorithm and "
        "precision settings); conv ops take the shape N, H, W, C, K, R, S, stride, pad, "
        "positionally or by name (impl_ops() lists each op's).");
}
