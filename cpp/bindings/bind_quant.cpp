#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>

#include "nnsqueeze/quantize.hpp"
#include "nnsqueeze/rdoq.hpp"
#include "nnsqueeze/trellis.hpp"

#include <tuple>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using Floats = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using FloatsOut = nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using LevelsIn = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using LevelsOut = nb::ndarray<int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

using FusedEncoder = nnsqueeze::RdoqStats (*)(const float*, const float*, std::size_t, std::size_t, double, double,
                                              const nnsqueeze::LevelCoderParams&, int32_t*, std::vector<uint8_t>&);

// RDOQ and trellis quantization share one signature: quantize, code, return (payload, distortion).
template <FusedEncoder encode>
std::tuple<nb::bytes, double> fused_encode(Floats w, std::optional<Floats> importance, std::size_t rows,
                                                    std::size_t cols, double step, double lambda, int num_gtx,
                                                    int fast_shift, int slow_shift,
                                                    std::optional<LevelsOut> levels) {
    if (rows * cols != w.shape(0) || (levels && w.shape(0) != levels->shape(0)))
        throw std::invalid_argument("rows * cols must match the lengths of w and levels");
    if (importance && importance->shape(0) != w.shape(0))
        throw std::invalid_argument("importance must have one value per weight");
    nnsqueeze::LevelCoderParams params;
    params.num_gtx = num_gtx;
    params.rate = nnsqueeze::Adaptation(fast_shift, slow_shift);
    std::vector<uint8_t> out;
    nnsqueeze::RdoqStats stats;
    {
        nb::gil_scoped_release release;
        stats = encode(w.data(), importance ? importance->data() : nullptr, rows, cols, step, lambda, params,
                       levels ? levels->data() : nullptr, out);
    }
    return {nb::bytes(reinterpret_cast<const char*>(out.data()), out.size()), stats.distortion};
}

}  // namespace

void bind_quant(nb::module_& m) {
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
        [](LevelsIn levels, double step, FloatsOut out) {
            if (levels.shape(0) != out.shape(0)) throw std::invalid_argument("input and output lengths differ");
            nb::gil_scoped_release release;
            nnsqueeze::dequantize_uniform(levels.data(), levels.shape(0), step, out.data());
        },
        "levels"_a.noconvert(), "step"_a, "out"_a.noconvert());

    m.def("encode_rdoq", &fused_encode<nnsqueeze::encode_rdoq>, "w"_a.noconvert(),
          "importance"_a.noconvert().none(), "rows"_a, "cols"_a, "step"_a, "lambda_"_a, "num_gtx"_a,
          "fast_shift"_a, "slow_shift"_a, "levels"_a.noconvert().none());
    m.def("encode_trellis", &fused_encode<nnsqueeze::encode_trellis>, "w"_a.noconvert(),
          "importance"_a.noconvert().none(), "rows"_a, "cols"_a, "step"_a, "lambda_"_a, "num_gtx"_a,
          "fast_shift"_a, "slow_shift"_a, "levels"_a.noconvert().none());
}
