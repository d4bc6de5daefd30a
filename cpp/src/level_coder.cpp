#include "nnsqueeze/level_coder.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "nnsqueeze/arith.hpp"

namespace nnsqueeze {
namespace {

constexpr int kScaleClasses = 40;   // quarter-octave classes of the expected magnitude
constexpr int kPrefixContexts = 24;
constexpr int kRowShift = 8;        // row magnitude: mean over the last ~256 levels
constexpr int kColShift = 5;        // column magnitude: mean over the last ~32 rows
constexpr int kFixedBits = 8;       // magnitudes are tracked as |q| * 2^8
constexpr uint32_t kMagCap = 1u << 16;

// 4 * log2(x) with two fractional bits; 0 for x <= 1.
inline int log2_quarter(uint32_t x) {
    if (x <= 1) return 0;
    const int msb = 31 - __builtin_clz(x);
    const int frac = msb >= 2 ? static_cast<int>((x >> (msb - 2)) & 3u) : static_cast<int>((x << (2 - msb)) & 3u);
    return 4 * msb + frac;
}

inline int bit_length(uint64_t x) { return x == 0 ? 0 : 64 - __builtin_clzll(x); }

// Context models of one tensor and the neighbourhood state that selects among them.
// Shared verbatim by encoder and decoder.
class LevelContexts {
public:
    LevelContexts(std::size_t cols, int num_gtx)
        : num_gtx_(num_gtx),
          sig_(kScaleClasses * 2),
          sign_(3),
          gtx_(static_cast<std::size_t>(kScaleClasses) * static_cast<std::size_t>(std::max(num_gtx, 1))),
          prefix_(kPrefixContexts),
          col_mag_(cols, 0) {}

    void start_row(std::size_t row) {
        row_ = row;
        in_row_ = 0;
        prev_ = 0;
        mean_ = count_ == 0 ? 0 : static_cast<uint32_t>(sum_ / count_);
        row_mag_ = mean_;
        log_mean_ = log2_quarter(mean_);
        col_shift_ = std::min(bit_length(row), kColShift);
    }

    // Selects the scale class for column `col`; call before coding the level there.
    void select(std::size_t col) {
        const int lr = log2_quarter(row_mag_);
        const int lc = row_ == 0 ? log_mean_ : log2_quarter(col_mag_[col]);
        // log2(row * col / mean) in quarter octaves; 2^-4 expected |q| maps to class 0.
        int cls = (lr + lc - log_mean_) - 4 * (kFixedBits - 4);
        cls_ = std::clamp(cls, 0, kScaleClasses - 1);
    }

    ContextModel& sig() { return sig_[2 * cls_ + (prev_ != 0)]; }
    ContextModel& sign() { return sign_[prev_ == 0 ? 0 : (prev_ < 0 ? 1 : 2)]; }
    ContextModel& gtx(int k) { return gtx_[cls_ * num_gtx_ + (k - 1)]; }
    ContextModel& prefix(int pos) { return prefix_[std::min(pos, kPrefixContexts - 1)]; }

    void update(std::size_t col, int32_t level) {
        const uint32_t a = static_cast<uint32_t>(std::min<int64_t>(level < 0 ? -int64_t{level} : level, kMagCap))
                           << kFixedBits;
        const int rs = std::min(bit_length(in_row_ + 1), kRowShift);
        row_mag_ = static_cast<uint32_t>(static_cast<int64_t>(row_mag_) +
                                         ((static_cast<int64_t>(a) - row_mag_) >> rs));
        if (row_ == 0) {
            col_mag_[col] = a;
        } else {
            col_mag_[col] = static_cast<uint32_t>(static_cast<int64_t>(col_mag_[col]) +
                                                  ((static_cast<int64_t>(a) - col_mag_[col]) >> col_shift_));
        }
        sum_ += a;
        ++count_;
        ++in_row_;
        prev_ = level;
    }

private:
    int num_gtx_;
    std::vector<ContextModel> sig_, sign_, gtx_, prefix_;
    std::vector<uint32_t> col_mag_;
    uint64_t sum_ = 0, count_ = 0, in_row_ = 0;
    std::size_t row_ = 0;
    uint32_t mean_ = 0, row_mag_ = 0;
    int log_mean_ = 0, col_shift_ = 0, cls_ = 0;
    int32_t prev_ = 0;
};

void check_params(const LevelCoderParams& params) {
    check_adaptation(params.rate);
    if (params.num_gtx < 0 || params.num_gtx > kMaxGtx) {
        throw std::invalid_argument("num_gtx must be in 0.." + std::to_string(kMaxGtx) + ", got " +
                                    std::to_string(params.num_gtx));
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
            enc.encode(q != 0, ctx.sig());
            if (q != 0) {
                enc.encode(q < 0, ctx.sign());
                int k = 1;
                for (; k <= n; ++k) {
                    const unsigned greater = mag > k;
                    enc.encode(greater, ctx.gtx(k));
                    if (!greater) break;
                }
                if (k > n) {
                    // Exp-Golomb order 0 of the remainder.
                    uint64_t rem = static_cast<uint64_t>(mag - n - 1);
                    int pos = 0;
                    while (rem >= (uint64_t{1} << pos)) {
                        enc.encode(1, ctx.prefix(pos));
                        rem -= uint64_t{1} << pos;
                        ++pos;
                    }
                    enc.encode(0, ctx.prefix(pos));
                    enc.encode_bypass(static_cast<uint32_t>(rem), pos);
                }
            }
            ctx.update(c, q);
        }
    }
    enc.finish();
}

// Decodes levels in scan order and hands each to `sink(index, level)`.
template <class Sink>
void decode_levels_to(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                      const LevelCoderParams& params, Sink&& sink) {
    check_params(params);
    ArithDecoder dec(data, size, params.rate);
    LevelContexts ctx(rows == 0 ? 0 : cols, params.num_gtx);  // no column state for empty tensors
    const int n = params.num_gtx;
    for (std::size_t r = 0; r < rows; ++r) {
        if (dec.overrun()) throw BitstreamError("payload ends early (truncated level stream)");
        ctx.start_row(r);
        for (std::size_t c = 0; c < cols; ++c) {
            ctx.select(c);
            int32_t q = 0;
            if (dec.decode(ctx.sig())) {
                const bool negative = dec.decode(ctx.sign());
                int64_t mag = 1;
                int k = 1;
                for (; k <= n; ++k) {
                    if (!dec.decode(ctx.gtx(k))) break;
                    ++mag;
                }
                if (k > n) {
                    int pos = 0;
                    uint64_t rem = 0;
                    while (dec.decode(ctx.prefix(pos))) {
                        rem += uint64_t{1} << pos;
                        if (++pos > 30) throw BitstreamError("corrupt level stream (Exp-Golomb prefix too long)");
                    }
                    rem += dec.decode_bypass(pos);
                    mag = n + 1 + static_cast<int64_t>(rem);
                    if (mag > kMaxAbsLevel) throw BitstreamError("corrupt level stream (level out of range)");
                }
                q = static_cast<int32_t>(negative ? -mag : mag);
            }
            sink(r * cols + c, q);
            ctx.update(c, q);
        }
    }
    if (dec.overrun()) throw BitstreamError("payload ends early (truncated level stream)");
    if (dec.consumed() != size) {
        throw BitstreamError("level stream has " + std::to_string(size - dec.consumed()) +
                             " trailing bytes (corrupt or wrong shape)");
    }
}

void decode_levels(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                   const LevelCoderParams& params, int32_t* levels) {
    decode_levels_to(data, size, rows, cols, params, [levels](std::size_t i, int32_t q) { levels[i] = q; });
}

void decode_dequantize(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                       const LevelCoderParams& params, int64_t offset, double step, float* values) {
    decode_levels_to(data, size, rows, cols, params, [=](std::size_t i, int32_t q) {
        values[i] = static_cast<float>(static_cast<double>(q + offset) * step);
    });
}

}  // namespace nnsqueeze
