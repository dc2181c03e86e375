// bindings/augment.cpp: Python bindings for the augmentation kernels (cpp/augment.cpp).
//   random_crop_flip(x (N,C,H,W) or (N,H,W,C), padding, flip, seed, channels_last, out=None,
//                    first_index=0) -> y
//   crop_flip_params(seed, i, padding, flip) -> (oy, ox, flipped)   (image i's random choices)
#include "augment.h"
#include "checks.h"

namespace py = pybind11;
using namespace rc::py_checks;

namespace {

constexpr int64_t kMaxPadding = 1 << 20;
constexpr int64_t kMaxIndex = INT64_MAX / 8;  // first_index + N stays below i's limit

// Any Python int is a seed: taken modulo 2^64.
uint64_t seed_u64(const py::int_& seed) {
    unsigned long long v = PyLong_AsUnsignedLongLongMask(seed.ptr());
    if (v == (unsigned long long)-1 && PyErr_Occurred()) throw py::error_already_set();
    return (uint64_t)v;
}

py::array crop_flip(const py::object& x_, int64_t padding, bool flip, const py::int_& seed,
                    bool channels_last, const py::object& out, int64_t first_index) {
    auto x = require_f32(x_, "x", {-1, -1, -1, -1});
    require_range(padding, "padding", 0, kMaxPadding);
    require_range(first_index, "first_index", 0, kMaxIndex);
    Dims dims(x.shape(), x.shape() + 4);
    auto y = output_f32(out, "out", dims);
    require_disjoint(y, "out", x, "x");
    const int64_t N = dims[0];
    const int64_t C = channels_last ? dims[3] : dims[1];
    const int64_t H = channels_last ? dims[1] : dims[2];
    const int64_t W = channels_last ? dims[2] : dims[3];
    const uint64_t s = seed_u64(seed);
    {
        py::gil_scoped_release nogil;
        rc::random_crop_flip(y.mutable_data(), x.data(), N, C, H, W, padding, flip, s, channels_last,
                             first_index);
    }
    return y;
}

py::tuple params(const py::int_& seed, int64_t i, int64_t padding, bool flip) {
    require_range(i, "i", 0, INT64_MAX / 4 - 1);
    require_range(padding, "padding", 0, kMaxPadding);
    int64_t oy, ox;
    bool flipped;
    rc::crop_flip_params(seed_u64(seed), i, padding, flip, &oy, &ox, &flipped);
    return py::make_tuple(oy, ox, flipped);
}

}  // namespace

void bind_augment(py::module_& m) {
    m.def("random_crop_flip", &crop_flip, py::arg("x"), py::arg("padding"), py::arg("flip"),
          py::arg("seed"), py::arg("channels_last"), py::arg("out") = py::none(),
          py::arg("first_index") = 0,
          "Per image: zero-pad by `padding`, random HxW crop, and (flip=True) mirror with\n"
          "probability 1/2. Choices depend only on (seed, first_index + image index): any\n"
          "thread count gives the same output, and a batch's part at offset first_index gets\n"
          "the choices the whole batch would.");
    m.def("crop_flip_params", &params, py::arg("seed"), py::arg("i"), py::arg("padding"),
          py::arg("flip"),
          "The random choices random_crop_flip makes for image i: (oy, ox, flipped), the crop\n"
          "offset in the padded image and whether it is mirrored.");
}
