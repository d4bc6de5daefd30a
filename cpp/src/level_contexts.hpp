// Internal to the level coders: the context models of one tensor and the neighbourhood
// state that selects among them, plus the binarization of one level.  Shared verbatim by the
// encoder, the decoder and the rate-distortion optimising encoder.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnsqueeze/arith.hpp"
#include "nnsqueeze/level_coder.hpp"

namespace nnsqueeze::detail {

inline constexpr int kScaleClasses = 40;   // quarter-octave classes of the expected magnitude
inline constexpr int kPrefixContexts = 24;
inline constexpr int kRowShift = 8;        // row magnitude: mean over the last ~256 levels
inline constexpr int kColShift = 5;        // column magnitude: mean over the last ~32 rows
inline constexpr int kFixedBits = 8;       // magnitudes are tracked as |q| * 2^8
inline constexpr uint32_t kMagCap = 1u << 16;

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
          sig_(kScaleClasses * 2 * 2),
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

    // For rate estimates along hypothetical paths (trellis): the level before the next one.
    void assume_previous(int32_t level) { prev_ = level; }

    // Dependent quantization: which of the two quantizers codes the next level (0 otherwise).
    void set_quantizer(int qid) { qid_ = qid; }

    int scale_class() const { return cls_; }
    int32_t previous() const { return prev_; }

    ContextModel& sig() { return sig_[2 * (qid_ * kScaleClasses + cls_) + (prev_ != 0)]; }
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
    int log_mean_ = 0, col_shift_ = 0, cls_ = 0, qid_ = 0;
    int32_t prev_ = 0;
};

// Contexts of the hinted coder: LevelContexts, with the significance and sign bins also
// conditioned on a per-element hint class that encoder and decoder both know.  Significance
// uses a quarter of the scale classes, so that hint classes x scales stay learnable on small
// tensors; the sign follows the last nonzero sign of the row (update rows often share one
// sign: with ReLU inputs, a linear layer's update row is delta_i times non-negative inputs).
class HintedContexts {
public:
    static constexpr int kScales = kScaleClasses / 4;

    HintedContexts(std::size_t cols, int num_gtx, int hint_classes)
        : base_(cols, num_gtx),
          sig_(static_cast<std::size_t>(hint_classes) * kScales * 2),
          sign_(static_cast<std::size_t>(hint_classes) * 3) {}

    void start_row(std::size_t row) {
        base_.start_row(row);
        last_sign_ = 0;
    }

    void select(std::size_t col, uint8_t hint) {
        base_.select(col);
        hint_ = hint;
    }

    ContextModel& sig() {
        return sig_[2 * (hint_ * kScales + base_.scale_class() / 4) + (base_.previous() != 0)];
    }
    ContextModel& sign() { return sign_[3 * hint_ + last_sign_]; }
    ContextModel& gtx(int k) { return base_.gtx(k); }
    ContextModel& prefix(int pos) { return base_.prefix(pos); }

    void update(std::size_t col, int32_t level) {
        base_.update(col, level);
        if (level != 0) last_sign_ = level < 0 ? 1 : 2;
    }

private:
    LevelContexts base_;
    std::vector<ContextModel> sig_, sign_;
    int hint_ = 0, last_sign_ = 0;
};

// Codes one level with the current contexts (which must have been selected for it).
template <class Contexts>
void encode_level(ArithEncoder& enc, Contexts& ctx, int32_t q, int num_gtx) {
    const int64_t mag = q < 0 ? -int64_t{q} : q;
    enc.encode(q != 0, ctx.sig());
    if (q == 0) return;
    enc.encode(q < 0, ctx.sign());
    int k = 1;
    for (; k <= num_gtx; ++k) {
        const unsigned greater = mag > k;
        enc.encode(greater, ctx.gtx(k));
        if (!greater) return;
    }
    // Exp-Golomb order 0 of the remainder.
    uint64_t rem = static_cast<uint64_t>(mag - num_gtx - 1);
    int pos = 0;
    while (rem >= (uint64_t{1} << pos)) {
        enc.encode(1, ctx.prefix(pos));
        rem -= uint64_t{1} << pos;
        ++pos;
    }
    enc.encode(0, ctx.prefix(pos));
    enc.encode_bypass(static_cast<uint32_t>(rem), pos);
}

// Decodes one level with the current contexts (which must have been selected for it).
template <class Contexts>
int32_t decode_level(ArithDecoder& dec, Contexts& ctx, int num_gtx) {
    if (!dec.decode(ctx.sig())) return 0;
    const bool negative = dec.decode(ctx.sign());
    int64_t mag = 1;
    int k = 1;
    for (; k <= num_gtx; ++k) {
        if (!dec.decode(ctx.gtx(k))) break;
        ++mag;
    }
    if (k > num_gtx) {
        int pos = 0;
        uint64_t rem = 0;
        while (dec.decode(ctx.prefix(pos))) {
            rem += uint64_t{1} << pos;
            if (++pos > 30) throw BitstreamError("corrupt level stream (Exp-Golomb prefix too long)");
        }
        rem += dec.decode_bypass(pos);
        mag = num_gtx + 1 + static_cast<int64_t>(rem);
        if (mag > kMaxAbsLevel) throw BitstreamError("corrupt level stream (level out of range)");
    }
    return static_cast<int32_t>(negative ? -mag : mag);
}

// Estimated bits of the magnitude part of a level (the "abs > k" flags and the remainder),
// given that it is not zero.
inline float magnitude_cost(LevelContexts& ctx, int64_t mag, int num_gtx) {
    float bits = 0;
    for (int k = 1; k <= num_gtx; ++k) {
        if (mag <= k) return bits + bit_cost(ctx.gtx(k), 0);
        bits += bit_cost(ctx.gtx(k), 1);
    }
    uint64_t rem = static_cast<uint64_t>(mag - num_gtx - 1);
    int pos = 0;
    while (rem >= (uint64_t{1} << pos)) {
        bits += bit_cost(ctx.prefix(pos), 1);
        rem -= uint64_t{1} << pos;
        ++pos;
    }
    return bits + bit_cost(ctx.prefix(pos), 0) + static_cast<float>(pos);
}

// Estimated bits of coding a level of magnitude `mag` (sign bin included when mag > 0) with
// the current contexts; nothing is updated.
inline float level_cost(LevelContexts& ctx, int64_t mag, bool negative, int num_gtx) {
    if (mag == 0) return bit_cost(ctx.sig(), 0);
    return bit_cost(ctx.sig(), 1) + bit_cost(ctx.sign(), negative) + magnitude_cost(ctx, mag, num_gtx);
}

}  // namespace nnsqueeze::detail
