// Bindings of the MPEG NNR payload decoder: conversion and forwarding only.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "nnsqueeze/nnr_cabac.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {
using Bytes = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using LevelsOut = nb::ndarray<int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Levels = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Floats = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
}  // namespace

void bind_nnr(nb::module_& m) {
    m.def(
        "nnr_decode_tensor",
        [](Bytes payload, std::size_t rows, std::size_t cols, int qp_offset_bits, bool dependent, int scan_order,
           int profile, bool parent_node_id_present, uint32_t codebook_size, uint32_t codebook_zero_offset,
           uint32_t unary_length, std::vector<uint64_t> entry_point_offsets,
           std::vector<uint32_t> entry_point_values, std::vector<uint32_t> entry_point_states, LevelsOut out,
           std::optional<Levels> previous_update) {
            const bool match = cols == 0 ? out.shape(0) == 0 : out.shape(0) % cols == 0 && out.shape(0) / cols == rows;
            if (!match) throw std::invalid_argument("rows * cols does not match the output size");
            if (entry_point_values.size() != entry_point_offsets.size() ||
                entry_point_states.size() != entry_point_offsets.size())
                throw std::invalid_argument("entry point lists differ in length");
            nnsqueeze::nnr::TensorSyntax syntax;
            syntax.rows = rows;
            syntax.cols = cols;
            syntax.qp_offset_bits = qp_offset_bits;
            syntax.dependent = dependent;
            syntax.scan_order = scan_order;
            syntax.profile = profile;
            syntax.parent_node_id_present = parent_node_id_present;
            syntax.codebook_size = codebook_size;
            syntax.codebook_zero_offset = codebook_zero_offset;
            syntax.unary_length = unary_length;
            syntax.entry_point_offsets = std::move(entry_point_offsets);
            syntax.entry_point_values = std::move(entry_point_values);
            syntax.entry_point_states = std::move(entry_point_states);
            if (previous_update) {
                if (previous_update->shape(0) != out.shape(0))
                    throw std::invalid_argument("the previous update's levels differ in size from the tensor");
                syntax.previous_update = previous_update->data();
            }
            nnsqueeze::nnr::TensorResult result;
            {
                nb::gil_scoped_release release;
                result = nnsqueeze::nnr::decode_tensor(payload.data(), payload.shape(0), syntax, out.data());
            }
            return std::make_tuple(result.qp_offset, result.bytes_read, result.row_skipping, result.skipped_rows,
                                   result.tuned_contexts);
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "qp_offset_bits"_a, "dependent"_a, "scan_order"_a, "profile"_a,
        "parent_node_id_present"_a, "codebook_size"_a, "codebook_zero_offset"_a, "unary_length"_a,
        "entry_point_offsets"_a, "entry_point_values"_a, "entry_point_states"_a, "out"_a.noconvert(),
        "previous_update"_a.noconvert() = nb::none());
    m.def(
        "nnr_encode_tensor",
        [](Levels levels, std::size_t rows, std::size_t cols, int qp_offset_bits, int32_t qp_offset, bool dependent,
           uint32_t unary_length, bool choose_estimators) {
            const bool match = cols == 0 ? levels.shape(0) == 0
                                         : levels.shape(0) % cols == 0 && levels.shape(0) / cols == rows;
            if (!match) throw std::invalid_argument("rows * cols does not match the number of levels");
            nnsqueeze::nnr::TensorSyntax syntax;
            syntax.rows = rows;
            syntax.cols = cols;
            syntax.qp_offset_bits = qp_offset_bits;
            syntax.dependent = dependent;
            syntax.profile = 1;
            syntax.unary_length = unary_length;
            std::vector<uint8_t> out;
            {
                nb::gil_scoped_release release;
                out = nnsqueeze::nnr::encode_tensor(levels.data(), syntax, qp_offset, choose_estimators);
            }
            return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size());
        },
        "levels"_a.noconvert(), "rows"_a, "cols"_a, "qp_offset_bits"_a, "qp_offset"_a, "dependent"_a,
        "unary_length"_a, "choose_estimators"_a);
    m.def(
        "nnr_dependent_quantize",
        [](Floats weights, std::size_t rows, std::size_t cols, double step, double lambda, LevelsOut out) {
            const bool match = cols == 0 ? weights.shape(0) == 0
                                         : weights.shape(0) % cols == 0 && weights.shape(0) / cols == rows;
            if (!match || out.shape(0) != weights.shape(0))
                throw std::invalid_argument("rows * cols does not match the weights and the output");
            nb::gil_scoped_release release;
            nnsqueeze::nnr::dependent_quantize(weights.data(), rows, cols, step, lambda, out.data());
        },
        "weights"_a.noconvert(), "rows"_a, "cols"_a, "step"_a, "lambda_"_a, "out"_a.noconvert());
    m.def("nnr_block_rows", &nnsqueeze::nnr::block_rows, "rows"_a, "cols"_a, "scan_order"_a);
}
