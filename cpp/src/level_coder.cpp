#include "nnsqueeze/level_coder.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "nnsqueeze/arith.hpp"
#include "level_contexts.hpp"
#include "nnsqueeze/trellis.hpp"

namespace nnsqueeze {
namespace {

using detail::LevelContexts;

// Past the payload the decoder reads zeros, which decode as cheap runs of zero levels: it checks
// for having run past the end every 4096 levels of a row as well as at every row.
constexpr std::size_t kOverrunCheckMask = 4095;

void check_params(const LevelCoderParams& params) {
    check_adaptation(params.rate);
    if (params.num_gtx < 0 || params.num_gtx > kMaxGtx) {
        throw std::invalid_argument("num_gtx must be in 0.." + std::to_string(kMaxGtx) + ", got " +
                                    std::to_string(params.num_gtx));
    }
}

void check_end(const ArithDecoder& dec, std::size_t size) {
    if (dec.overrun()) throw BitstreamError("payload ends early (truncated level stream)");
    if (dec.consumed() != size) {
        throw BitstreamError("level stream has " + std::to_string(size - dec.consumed()) +
                             " trailing bytes (corrupt or wrong shape)");
    }
}

void check_hints(const uint8_t* hints, std::size_t count, int hint_classes) {
    if (hint_classes < 1 || hint_classes > kMaxHintClasses) {
        throw std::invalid_argument("hint_classes must be in 1.." + std::to_string(kMaxHintClasses) + ", got " +
                                    std::to_string(hint_classes));
    }
    for (std::size_t i = 0; i < count; ++i) {
        if (hints[i] >= hint_classes) {
            throw std::invalid_argument("hint " + std::to_string(hints[i]) + " at index " + std::to_string(i) +
                                        " is not below hint_classes = " + std::to_string(hint_classes));
        }
    }
}

}  // namespace

uint64_t max_elements_for_payload(std::size_t payload_bytes) {
    // A context-coded bin costs at least -log2(1 - 2^-10) > 1/710 bit; allow for the
    // coder's 5 flush bytes and rounding.
    return (static_cast<uint64_t>(payload_bytes) + 8) * 8 * 710;
}

void encode_levels(const int32_t* levels, std::size_t rows, std::size_t cols, const LevelCoderParams& params,
                   std::vector<uint8_t>& out) {
    check_params(params);
    ArithEncoder enc(out, params.rate);
    LevelContexts ctx(rows == 0 ? 0 : cols, params.num_gtx);  // no column state for empty tensors
    const int n = params.num_gtx;
    // An empty tensor has nothing to scan, however many (empty) rows it claims.
    if (cols == 0) rows = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        ctx.start_row(r);
        const int32_t* row = levels + r * cols;
        for (std::size_t c = 0; c < cols; ++c) {
            const int32_t q = row[c];
            const int64_t mag = q < 0 ? -int64_t{q} : q;
            if (mag > kMaxAbsLevel) {
                throw std::invalid_argument("level " + std::to_string(q) + " at index " +
                                            std::to_string(r * cols + c) + " exceeds the codable range +-" +
                                            std::to_string(kMaxAbsLevel));
            }
            ctx.select(c);
            detail::encode_level(enc, ctx, q, n);
            ctx.update(c, q);
        }
    }
    enc.finish();
}

void encode_levels_hinted(const int32_t* levels, const uint8_t* hints, std::size_t rows, std::size_t cols,
                          int hint_classes, const LevelCoderParams& params, std::vector<uint8_t>& out) {
    check_params(params);
    if (cols == 0) rows = 0;
    check_hints(hints, rows * cols, hint_classes);
    ArithEncoder enc(out, params.rate);
    detail::HintedContexts ctx(rows == 0 ? 0 : cols, params.num_gtx, hint_classes);
    for (std::size_t r = 0; r < rows; ++r) {
        ctx.start_row(r);
        for (std::size_t c = 0; c < cols; ++c) {
            const std::size_t i = r * cols + c;
            const int32_t q = levels[i];
            if ((q < 0 ? -int64_t{q} : q) > kMaxAbsLevel) {
                throw std::invalid_argument("level " + std::to_string(q) + " at index " + std::to_string(i) +
                                            " exceeds the codable range +-" + std::to_string(kMaxAbsLevel));
            }
            ctx.select(c, hints[i]);
            detail::encode_level(enc, ctx, q, params.num_gtx);
            ctx.update(c, q);
        }
    }
    enc.finish();
}

void decode_levels_hinted(const uint8_t* data, std::size_t size, const uint8_t* hints, std::size_t rows,
                          std::size_t cols, int hint_classes, const LevelCoderParams& params, int32_t* levels) {
    check_params(params);
    if (cols == 0) rows = 0;
    check_hints(hints, rows * cols, hint_classes);
    ArithDecoder dec(data, size, params.rate);
    detail::HintedContexts ctx(rows == 0 ? 0 : cols, params.num_gtx, hint_classes);
    for (std::size_t r = 0; r < rows; ++r) {
        if (dec.overrun()) throw BitstreamError("payload ends early (truncated level stream)");
        ctx.start_row(r);
        for (std::size_t c = 0; c < cols; ++c) {
            if ((c & kOverrunCheckMask) == kOverrunCheckMask && dec.overrun())
                throw BitstreamError("payload ends early (truncated level stream)");
            const std::size_t i = r * cols + c;
            ctx.select(c, hints[i]);
            levels[i] = detail::decode_level(dec, ctx, params.num_gtx);
            ctx.update(c, levels[i]);
        }
    }
    check_end(dec, size);
}

// Decodes levels in scan order and hands each to `sink.consume(index, level)`; `sink.quantizer()`
// names the quantizer of the next level (dependent quantization; 0 otherwise).
template <class Sink>
void decode_levels_to(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                      const LevelCoderParams& params, Sink&& sink) {
    check_params(params);
    ArithDecoder dec(data, size, params.rate);
    LevelContexts ctx(rows == 0 ? 0 : cols, params.num_gtx);  // no column state for empty tensors
    const int n = params.num_gtx;
    // An empty tensor has nothing to scan, however many (empty) rows it claims.
    if (cols == 0) rows = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        if (dec.overrun()) throw BitstreamError("payload ends early (truncated level stream)");
        ctx.start_row(r);
        for (std::size_t c = 0; c < cols; ++c) {
            // Also inside long rows: a header claiming a billion columns must not run on past the end.
            if ((c & kOverrunCheckMask) == kOverrunCheckMask && dec.overrun())
                throw BitstreamError("payload ends early (truncated level stream)");
            ctx.select(c);
            ctx.set_quantizer(sink.quantizer());
            const int32_t q = detail::decode_level(dec, ctx, n);
            sink.consume(r * cols + c, q);
            ctx.update(c, q);
        }
    }
    check_end(dec, size);
}

namespace {

struct LevelSink {
    int32_t* levels;
    static int quantizer() { return 0; }
    void consume(std::size_t i, int32_t q) const { levels[i] = q; }
};

struct UniformSink {
    float* values;
    int64_t offset;
    double step;
    static int quantizer() { return 0; }
    void consume(std::size_t i, int32_t q) const {
        values[i] = static_cast<float>(static_cast<double>(q + offset) * step);
    }
};

struct DependentSink {
    float* values;
    double step;
    int state = 0;
    int quantizer() const { return state >> 1; }
    void consume(std::size_t i, int32_t k) {
        values[i] = static_cast<float>(static_cast<double>(dq_reconstruction(k, state)) * step);
        state = kDqNextState[state][k & 1];
    }
};

}  // namespace

void decode_levels(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                   const LevelCoderParams& params, int32_t* levels) {
    decode_levels_to(data, size, rows, cols, params, LevelSink{levels});
}

void decode_dequantize(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                       const LevelCoderParams& params, int64_t offset, double step, float* values) {
    decode_levels_to(data, size, rows, cols, params, UniformSink{values, offset, step});
}

void decode_dependent(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                      const LevelCoderParams& params, double step, float* values) {
    decode_levels_to(data, size, rows, cols, params, DependentSink{values, step});
}

}  // namespace nnsqueeze
