#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "nnsqueeze/arith.hpp"
#include "nnsqueeze/byte_coder.hpp"
#include "nnsqueeze/checksum.hpp"
#include "nnsqueeze/level_coder.hpp"
#include "nnsqueeze/plane_coder.hpp"
#include "nnsqueeze/token_coder.hpp"
#include "nnsqueeze/trellis.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using Levels = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using LevelsOut = nb::ndarray<int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Bytes = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using BytesOut = nb::ndarray<uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using FloatsOut = nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Lengths = nb::ndarray<const uint64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

nb::bytes to_bytes(const std::vector<uint8_t>& v) { return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size()); }

void check_count(std::size_t rows, std::size_t cols, std::size_t count) {
    // Divides rather than multiplies: rows * cols may wrap around.
    const bool match = cols == 0 ? count == 0 : count % cols == 0 && count / cols == rows;
    if (!match) throw std::invalid_argument("rows * cols does not match the number of levels");
}

nnsqueeze::PlaneLayout plane_layout(std::size_t bytes, int itemsize, bool rotate_sign, std::size_t chunk_elements) {
    nnsqueeze::PlaneLayout layout;
    layout.itemsize = itemsize;
    layout.rotate_sign = rotate_sign;
    layout.chunk_elements = chunk_elements;
    nnsqueeze::check_plane_layout(layout);
    if (bytes % static_cast<std::size_t>(itemsize) != 0)
        throw std::invalid_argument("data length is not a multiple of itemsize");
    layout.count = bytes / static_cast<std::size_t>(itemsize);
    return layout;
}

nnsqueeze::LevelCoderParams params(int num_gtx, int fast_shift, int slow_shift) {
    nnsqueeze::LevelCoderParams p;
    p.num_gtx = num_gtx;
    p.rate = nnsqueeze::Adaptation(fast_shift, slow_shift);
    return p;
}

}  // namespace

void bind_coding(nb::module_& m) {
    nb::exception<nnsqueeze::BitstreamError>(m, "CoreBitstreamError", PyExc_ValueError);

    m.attr("MAX_GTX") = nnsqueeze::kMaxGtx;
    m.attr("MAX_ABS_LEVEL") = nnsqueeze::kMaxAbsLevel;
    m.attr("MAX_SHIFT") = nnsqueeze::kMaxShift;
    m.attr("MAX_HINT_CLASSES") = nnsqueeze::kMaxHintClasses;

    m.def("max_elements_for_payload", &nnsqueeze::max_elements_for_payload, "payload_bytes"_a);

    m.def(
        "encode_levels",
        [](Levels levels, std::size_t rows, std::size_t cols, int num_gtx, int fast_shift, int slow_shift) {
            check_count(rows, cols, levels.shape(0));
            std::vector<uint8_t> out;
            {
                nb::gil_scoped_release release;
                out.reserve(levels.shape(0) / 2 + 16);
                nnsqueeze::encode_levels(levels.data(), rows, cols, params(num_gtx, fast_shift, slow_shift), out);
            }
            return to_bytes(out);
        },
        "levels"_a.noconvert(), "rows"_a, "cols"_a, "num_gtx"_a, "fast_shift"_a, "slow_shift"_a);

    m.def(
        "decode_levels",
        [](Bytes payload, std::size_t rows, std::size_t cols, int num_gtx, int fast_shift, int slow_shift,
           LevelsOut out) {
            check_count(rows, cols, out.shape(0));
            nb::gil_scoped_release release;
            nnsqueeze::decode_levels(payload.data(), payload.shape(0), rows, cols,
                                     params(num_gtx, fast_shift, slow_shift), out.data());
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "num_gtx"_a, "fast_shift"_a, "slow_shift"_a,
        "out"_a.noconvert());

    m.def(
        "encode_levels_hinted",
        [](Levels levels, std::size_t rows, std::size_t cols, int num_gtx, int fast_shift, int slow_shift,
           Bytes hints, int hint_classes) {
            check_count(rows, cols, levels.shape(0));
            check_count(rows, cols, hints.shape(0));
            std::vector<uint8_t> out;
            {
                nb::gil_scoped_release release;
                out.reserve(levels.shape(0) / 4 + 16);
                nnsqueeze::encode_levels_hinted(levels.data(), hints.data(), rows, cols, hint_classes,
                                                params(num_gtx, fast_shift, slow_shift), out);
            }
            return to_bytes(out);
        },
        "levels"_a.noconvert(), "rows"_a, "cols"_a, "num_gtx"_a, "fast_shift"_a, "slow_shift"_a,
        "hints"_a.noconvert(), "hint_classes"_a);

    m.def(
        "decode_levels_hinted",
        [](Bytes payload, std::size_t rows, std::size_t cols, int num_gtx, int fast_shift, int slow_shift,
           Bytes hints, int hint_classes, LevelsOut out) {
            check_count(rows, cols, out.shape(0));
            check_count(rows, cols, hints.shape(0));
            nb::gil_scoped_release release;
            nnsqueeze::decode_levels_hinted(payload.data(), payload.shape(0), hints.data(), rows, cols, hint_classes,
                                            params(num_gtx, fast_shift, slow_shift), out.data());
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "num_gtx"_a, "fast_shift"_a, "slow_shift"_a,
        "hints"_a.noconvert(), "hint_classes"_a, "out"_a.noconvert());

    m.def(
        "decode_dequantize",
        [](Bytes payload, std::size_t rows, std::size_t cols, int num_gtx, int fast_shift, int slow_shift,
           int64_t offset, double step, FloatsOut out) {
            check_count(rows, cols, out.shape(0));
            nb::gil_scoped_release release;
            nnsqueeze::decode_dequantize(payload.data(), payload.shape(0), rows, cols,
                                         params(num_gtx, fast_shift, slow_shift), offset, step, out.data());
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "num_gtx"_a, "fast_shift"_a, "slow_shift"_a, "offset"_a,
        "step"_a, "out"_a.noconvert());

    m.def(
        "decode_dependent",
        [](Bytes payload, std::size_t rows, std::size_t cols, int num_gtx, int fast_shift, int slow_shift,
           double step, FloatsOut out) {
            check_count(rows, cols, out.shape(0));
            nb::gil_scoped_release release;
            nnsqueeze::decode_dependent(payload.data(), payload.shape(0), rows, cols,
                                        params(num_gtx, fast_shift, slow_shift), step, out.data());
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "num_gtx"_a, "fast_shift"_a, "slow_shift"_a, "step"_a,
        "out"_a.noconvert());

    m.attr("TOKEN_CLASSES") = nnsqueeze::kTokenClasses;
    m.def("max_elements_for_token_payload", &nnsqueeze::max_elements_for_token_payload, "payload_bytes"_a);

    m.def(
        "encode_tokens",
        [](Levels levels, std::size_t rows, std::size_t cols) {
            check_count(rows, cols, levels.shape(0));
            std::vector<uint8_t> out;
            {
                nb::gil_scoped_release release;
                out.reserve(levels.shape(0) / 2 + 64);
                nnsqueeze::encode_tokens(levels.data(), rows, cols, out);
            }
            return to_bytes(out);
        },
        "levels"_a.noconvert(), "rows"_a, "cols"_a);

    m.def(
        "decode_tokens",
        [](Bytes payload, std::size_t rows, std::size_t cols, LevelsOut out) {
            check_count(rows, cols, out.shape(0));
            nb::gil_scoped_release release;
            nnsqueeze::decode_tokens(payload.data(), payload.shape(0), rows, cols, out.data());
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "out"_a.noconvert());

    m.def(
        "decode_tokens_dequantize",
        [](Bytes payload, std::size_t rows, std::size_t cols, int64_t offset, double step, FloatsOut out) {
            check_count(rows, cols, out.shape(0));
            nb::gil_scoped_release release;
            nnsqueeze::decode_tokens_dequantize(payload.data(), payload.shape(0), rows, cols, offset, step,
                                                out.data());
        },
        "payload"_a.noconvert(), "rows"_a, "cols"_a, "offset"_a, "step"_a, "out"_a.noconvert());

    m.def(
        "encode_bytes",
        [](Bytes data, int itemsize) {
            if (itemsize <= 0 || data.shape(0) % static_cast<std::size_t>(itemsize) != 0)
                throw std::invalid_argument("data length is not a multiple of itemsize");
            std::vector<uint8_t> out;
            {
                nb::gil_scoped_release release;
                out.reserve(data.shape(0) / 2 + 16);
                nnsqueeze::encode_bytes(data.data(), data.shape(0) / itemsize, itemsize, out);
            }
            return to_bytes(out);
        },
        "data"_a.noconvert(), "itemsize"_a);

    m.def(
        "decode_bytes",
        [](Bytes payload, int itemsize, BytesOut out) {
            if (itemsize <= 0 || out.shape(0) % static_cast<std::size_t>(itemsize) != 0)
                throw std::invalid_argument("output length is not a multiple of itemsize");
            nb::gil_scoped_release release;
            nnsqueeze::decode_bytes(payload.data(), payload.shape(0), out.shape(0) / itemsize, itemsize, out.data());
        },
        "payload"_a.noconvert(), "itemsize"_a, "out"_a.noconvert());

    m.attr("MAX_PLANE_CHUNK_ELEMENTS") = nnsqueeze::kMaxPlaneChunkElements;

    m.def(
        "encode_planes",
        [](Bytes data, int itemsize, bool rotate_sign, std::size_t chunk_elements, int threads) {
            const auto layout = plane_layout(data.shape(0), itemsize, rotate_sign, chunk_elements);
            std::vector<std::vector<uint8_t>> chunks;
            {
                nb::gil_scoped_release release;
                chunks = nnsqueeze::encode_planes(data.data(), layout, threads);
            }
            std::size_t total = 0;
            std::vector<uint64_t> lengths;
            for (const auto& c : chunks) {
                lengths.push_back(c.size());
                total += c.size();
            }
            // Filled in place: the chunks are copied once, straight into the Python object.
            auto payload = nb::steal<nb::bytes>(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total)));
            if (!payload.is_valid()) throw std::bad_alloc();
            auto* dst = reinterpret_cast<uint8_t*>(PyBytes_AsString(payload.ptr()));
            for (const auto& c : chunks) {
                std::copy(c.begin(), c.end(), dst);
                dst += c.size();
            }
            return std::make_tuple(std::move(payload), std::move(lengths));
        },
        "data"_a.noconvert(), "itemsize"_a, "rotate_sign"_a, "chunk_elements"_a, "threads"_a);

    m.def(
        "decode_planes",
        [](Bytes payload, Lengths chunk_lengths, int itemsize, bool rotate_sign, std::size_t chunk_elements,
           int threads, BytesOut out) {
            const auto layout = plane_layout(out.shape(0), itemsize, rotate_sign, chunk_elements);
            nb::gil_scoped_release release;
            nnsqueeze::decode_planes(payload.data(), payload.shape(0), chunk_lengths.data(), chunk_lengths.shape(0),
                                     layout, threads, out.data());
        },
        "payload"_a.noconvert(), "chunk_lengths"_a.noconvert(), "itemsize"_a, "rotate_sign"_a, "chunk_elements"_a,
        "threads"_a, "out"_a.noconvert());

    m.def(
        "crc32",
        [](Bytes data, uint32_t crc, bool accelerated) {
            nb::gil_scoped_release release;
            return nnsqueeze::crc32_update(data.data(), data.shape(0), crc, accelerated);
        },
        "data"_a.noconvert(), "crc"_a = 0, "accelerated"_a = true,
        "zlib.crc32(data, crc); accelerated=False forces the portable byte-table path.");
    m.attr("CRC32_ACCELERATED") = nnsqueeze::crc32_accelerated();
}
