// libFuzzer harness for the C++ decoders, built with clang's coverage instrumentation and
// AddressSanitizer (benchmarks/fuzz_cpp.sh builds and runs it).
//
// An input is a small header that picks a decoder and its parameters, followed by the payload:
//   byte 0      decoder: 0 levels, 1 levels+dequantize, 2 dependent (trellis), 3 hinted levels,
//               4 byte planes (binary contexts), 5 rANS byte planes, 6 tokens, 7 tokens+dequantize,
//               8 NNR payload (byte 1: bit 0 dependent, bit 1 parent signalled, bits 2.. unary length;
//               byte 2: QP offset bits mod 14)
//   byte 1      num_gtx (mod 33) / itemsize and sign rotation for the plane decoders
//   byte 2      adaptation shifts (levels) / log2 of the chunk size (planes)
//   bytes 3..6  rows and cols (16 bits each, little endian) / element count
//   bytes 7..   payload (planes: first a 16-bit length per chunk)
// The element count is bounded the way the Python callers bound it before they allocate
// (max_elements_for_payload), and capped to keep each execution short.
//
// The oracle: a decode either succeeds or throws BitstreamError (for NNR payloads also
// std::invalid_argument, which names a tool the decoder refuses, such as HDSP).  Anything else (another exception,
// a sanitizer report, a hang, memory beyond -rss_limit_mb) is a finding.  A successful decode is
// re-encoded and decoded again and must give the same values; the fused decode+dequantize must
// agree with decode_levels followed by the reconstruction formula.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nnsqueeze/arith.hpp"
#include "nnsqueeze/byte_coder.hpp"
#include "nnsqueeze/level_coder.hpp"
#include "nnsqueeze/nnr_cabac.hpp"
#include "nnsqueeze/plane_coder.hpp"
#include "nnsqueeze/token_coder.hpp"
#include "nnsqueeze/trellis.hpp"

namespace {

constexpr std::size_t kMaxElements = std::size_t{1} << 12;  // keeps an execution well under a millisecond

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "oracle violated: %s\n", what);
    std::abort();
}

unsigned u16(const uint8_t* p) { return p[0] | (unsigned{p[1]} << 8); }

nnsqueeze::LevelCoderParams level_params(uint8_t gtx, uint8_t shifts) {
    nnsqueeze::LevelCoderParams params;
    params.num_gtx = gtx % (nnsqueeze::kMaxGtx + 1);
    const int fast = 1 + (shifts & 7);
    const int slow = fast + ((shifts >> 3) % (nnsqueeze::kMaxShift - fast + 1));
    params.rate = nnsqueeze::Adaptation(fast, slow);
    return params;
}

void same_levels_after_reencode(const std::vector<int32_t>& levels, std::size_t rows, std::size_t cols,
                                const nnsqueeze::LevelCoderParams& params) {
    std::vector<uint8_t> again;
    nnsqueeze::encode_levels(levels.data(), rows, cols, params, again);
    std::vector<int32_t> back(levels.size());
    nnsqueeze::decode_levels(again.data(), again.size(), rows, cols, params, back.data());
    if (back != levels) finding("levels re-encoded decode to other levels");
}

void fuzz_levels(int kind, const uint8_t* header, const uint8_t* payload, std::size_t size) {
    const auto params = level_params(header[1], header[2]);
    const std::size_t rows = u16(header + 3), cols = u16(header + 5);
    const std::size_t count = rows * cols;
    if (count > kMaxElements || count > nnsqueeze::max_elements_for_payload(size)) return;
    std::vector<int32_t> levels(count);
    if (kind == 0) {
        nnsqueeze::decode_levels(payload, size, rows, cols, params, levels.data());
        same_levels_after_reencode(levels, rows, cols, params);
    } else if (kind == 1) {
        const int64_t offset = static_cast<int8_t>(header[2]);
        const double step = std::ldexp(1.0, static_cast<int>(header[1] % 64) - 32);
        std::vector<float> values(count);
        nnsqueeze::decode_dequantize(payload, size, rows, cols, params, offset, step, values.data());
        nnsqueeze::decode_levels(payload, size, rows, cols, params, levels.data());
        for (std::size_t i = 0; i < count; ++i) {
            const float expected = static_cast<float>(static_cast<double>(levels[i] + offset) * step);
            if (std::memcmp(&expected, &values[i], sizeof(float)) != 0) finding("decode_dequantize != decode_levels");
        }
    } else if (kind == 2) {
        std::vector<float> values(count);
        nnsqueeze::decode_dependent(payload, size, rows, cols, params, 0.5, values.data());
        for (float v : values)
            if (!std::isfinite(v)) finding("dependent decode gave a non-finite value");
    } else {
        const int classes = 1 + header[2] % nnsqueeze::kMaxHintClasses;
        std::vector<uint8_t> hints(count);
        for (std::size_t i = 0; i < count; ++i) hints[i] = static_cast<uint8_t>((i * 7 + i / 3) % classes);
        nnsqueeze::decode_levels_hinted(payload, size, hints.data(), rows, cols, classes, params, levels.data());
        std::vector<uint8_t> again;
        nnsqueeze::encode_levels_hinted(levels.data(), hints.data(), rows, cols, classes, params, again);
        std::vector<int32_t> back(count);
        nnsqueeze::decode_levels_hinted(again.data(), again.size(), hints.data(), rows, cols, classes, params,
                                        back.data());
        if (back != levels) finding("hinted levels re-encoded decode to other levels");
    }
}

void fuzz_tokens(int kind, const uint8_t* header, const uint8_t* payload, std::size_t size) {
    const std::size_t rows = u16(header + 3), cols = u16(header + 5);
    const std::size_t count = rows * cols;
    if (count > kMaxElements || count > nnsqueeze::max_elements_for_token_payload(size)) return;
    std::vector<int32_t> levels(count);
    nnsqueeze::decode_tokens(payload, size, rows, cols, levels.data());
    if (kind == 7) {
        const int64_t offset = static_cast<int8_t>(header[2]);
        const double step = std::ldexp(1.0, static_cast<int>(header[1] % 64) - 32);
        std::vector<float> values(count);
        nnsqueeze::decode_tokens_dequantize(payload, size, rows, cols, offset, step, values.data());
        for (std::size_t i = 0; i < count; ++i) {
            const float expected = static_cast<float>(static_cast<double>(levels[i] + offset) * step);
            if (std::memcmp(&expected, &values[i], sizeof(float)) != 0) finding("tokens dequantize != levels");
        }
    }
    std::vector<uint8_t> again;
    nnsqueeze::encode_tokens(levels.data(), rows, cols, again);
    std::vector<int32_t> back(count);
    nnsqueeze::decode_tokens(again.data(), again.size(), rows, cols, back.data());
    if (back != levels) finding("tokens re-encoded decode to other levels");
}

int itemsize_of(uint8_t b) { return 1 << (b & 3); }

void fuzz_bytes(const uint8_t* header, const uint8_t* payload, std::size_t size) {
    const int itemsize = itemsize_of(header[1]);
    const std::size_t count = u16(header + 3);
    if (count > kMaxElements || count > nnsqueeze::max_elements_for_payload(size)) return;
    std::vector<uint8_t> data(count * itemsize);
    nnsqueeze::decode_bytes(payload, size, count, itemsize, data.data());
    std::vector<uint8_t> again;
    nnsqueeze::encode_bytes(data.data(), count, itemsize, again);
    std::vector<uint8_t> back(data.size());
    nnsqueeze::decode_bytes(again.data(), again.size(), count, itemsize, back.data());
    if (back != data) finding("byte planes re-encoded decode to other bytes");
}

void fuzz_planes(const uint8_t* header, const uint8_t* rest, std::size_t size) {
    nnsqueeze::PlaneLayout layout;
    layout.itemsize = itemsize_of(header[1]);
    layout.rotate_sign = (header[1] & 4) != 0 && layout.itemsize >= 2;
    layout.chunk_elements = std::size_t{1} << (header[2] % 19);
    layout.count = u16(header + 3) | (std::size_t{header[5]} << 16);
    if (layout.count > kMaxElements) return;
    const std::size_t chunks = layout.chunk_count();
    if (chunks > 64 || size < 2 * chunks) return;
    std::vector<uint64_t> lengths(chunks);
    std::size_t total = 0;
    for (std::size_t c = 0; c < chunks; ++c) total += lengths[c] = u16(rest + 2 * c);
    const uint8_t* payload = rest + 2 * chunks;
    if (total != size - 2 * chunks) return;  // the container checks that the entry points add up
    std::vector<uint8_t> out(layout.count * layout.itemsize);
    nnsqueeze::decode_planes(payload, total, lengths.data(), chunks, layout, 1, out.data());
    const auto encoded = nnsqueeze::encode_planes(out.data(), layout, 1);
    std::vector<uint8_t> joined;
    std::vector<uint64_t> again_lengths;
    for (const auto& chunk : encoded) {
        joined.insert(joined.end(), chunk.begin(), chunk.end());
        again_lengths.push_back(chunk.size());
    }
    std::vector<uint8_t> back(out.size());
    nnsqueeze::decode_planes(joined.data(), joined.size(), again_lengths.data(), again_lengths.size(), layout, 1,
                             back.data());
    if (back != out) finding("planes re-encoded decode to other bytes");
}

void fuzz_nnr(const uint8_t* header, const uint8_t* payload, std::size_t size) {
    nnsqueeze::nnr::TensorSyntax syntax;
    syntax.rows = u16(header + 3);
    syntax.cols = u16(header + 5);
    syntax.dependent = (header[1] & 1) != 0;
    syntax.parent_node_id_present = (header[1] & 2) != 0;
    syntax.unary_length = 1 + (header[1] >> 2);
    syntax.qp_offset_bits = header[2] % 14;
    syntax.profile = 1;
    const std::size_t count = syntax.rows * syntax.cols;
    if (count > kMaxElements) return;
    std::vector<int32_t> levels(count);
    nnsqueeze::nnr::TensorResult first;
    try {
        first = nnsqueeze::nnr::decode_tensor(payload, size, syntax, levels.data());
    } catch (const std::invalid_argument&) {
        return;  // a refused tool
    }
    if (first.bytes_read != size) finding("NNR decode read a different length than the payload");
    for (int32_t v : levels)
        if (v > (1 << 29) - 1 || v < -((1 << 29) - 1)) return;  // beyond what the encoder takes
    syntax.parent_node_id_present = false;
    const auto again = nnsqueeze::nnr::encode_tensor(levels.data(), syntax, first.qp_offset, true);
    std::vector<int32_t> back(count);
    const auto second = nnsqueeze::nnr::decode_tensor(again.data(), again.size(), syntax, back.data());
    if (back != levels || second.qp_offset != first.qp_offset || second.bytes_read != again.size())
        finding("NNR levels re-encoded decode to other levels");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    constexpr std::size_t kHeader = 7;
    if (size < kHeader) return 0;
    const std::size_t payload_size = size - kHeader;
    // A copy of exactly the payload's length, so AddressSanitizer sees any read past its end.
    std::vector<uint8_t> payload(data + kHeader, data + size);
    const int kind = data[0] % 9;
    try {
        if (kind <= 3) fuzz_levels(kind, data, payload.data(), payload_size);
        else if (kind == 4) fuzz_bytes(data, payload.data(), payload_size);
        else if (kind == 5) fuzz_planes(data, payload.data(), payload_size);
        else if (kind == 8) fuzz_nnr(data, payload.data(), payload_size);
        else fuzz_tokens(kind, data, payload.data(), payload_size);
    } catch (const nnsqueeze::BitstreamError&) {
        // the expected outcome for a malformed payload
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        std::abort();
    }
    return 0;
}
