#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>

#include "nnsqueeze/quantize.hpp"

namespace nb = nanobind;
using namespace nb::literals;

void bind_quant(nb::module_& m) {
    using Floats = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    using FloatsOut = nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    using Levels = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
    using LevelsOut = nb::ndarray<int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

    m.def(
        "quantize_uniform",
        [](Floats w, double step, int64_t max_abs_level, LevelsOut out) {
            if (w.shape(0) != out.shape(0)) throw std::invalid_argument("input and output lengths differ");
            if (!(step > 0)) throw std::invalid_argument("step must be positive");
            nb::gil_scoped_release release;
            return nnsqueeze::quantize_uniform(w.data(), w.shape(0), step, max_abs_level, out.data());
        },
        "w"_a.noconvert(), "step"_a, "max_abs_level"_a, "out"_a.noconvert());

    m.def(
        "dequantize_uniform",
        [](Levels levels, double step, FloatsOut out) {
            if (levels.shape(0) != out.shape(0)) throw std::invalid_argument("input and output lengths differ");
            nb::gil_scoped_release release;
            nnsqueeze::dequantize_uniform(levels.data(), levels.shape(0), step, out.data());
        },
        "levels"_a.noconvert(), "step"_a, "out"_a.noconvert());
}
