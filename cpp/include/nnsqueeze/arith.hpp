// Binary arithmetic (range) coder with adaptive context models and bypass bins.
//
// The coder keeps a 32-bit range and a 33-bit low register and emits bytes with
// carry propagation through a pending-byte counter.  Probabilities are 15-bit.
// No Python headers here: this is the pure C++ core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace nnsqueeze {

// Raised by decoders on malformed input; the bindings map it to ValueError.
class BitstreamError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Probability precision of the coding engine.
inline constexpr int kProbBits = 15;
inline constexpr uint32_t kProbOne = 1u << kProbBits;
// Smallest probability of the less probable symbol (2^-10).  Bounds the cost of one
// context-coded bin from below, which lets decoders bound element counts by payload size.
inline constexpr uint32_t kProbMin = kProbOne >> 10;
inline constexpr uint32_t kProbMax = kProbOne - kProbMin;

// Adaptation rates of the context models of one stream: each model averages a fast and
// a slow exponentially decaying estimate; shifts are log2 of their time constants.
struct Adaptation {
    int fast_shift = 5;
    int slow_shift = 9;
    uint32_t warmup = (1u << 10) - 2;  // observations until the slow rate is reached

    Adaptation() = default;
    Adaptation(int fast, int slow) : fast_shift(fast), slow_shift(slow), warmup((1u << (slow + 1)) - 2) {}
};
inline constexpr int kMaxShift = 14;

inline void check_adaptation(const Adaptation& rate) {
    if (rate.fast_shift < 1 || rate.slow_shift < rate.fast_shift || rate.slow_shift > kMaxShift) {
        throw std::invalid_argument("adaptation shifts must satisfy 1 <= fast <= slow <= " +
                                    std::to_string(kMaxShift));
    }
}

// Adaptive binary probability estimator ("dual rate"): two estimates of P(bit = 1) in
// 24-bit fixed point, one fast and one slow, averaged.  A per-model count makes the first
// observations move the estimate like a running mean, so small tensors warm up quickly.
struct ContextModel {
    uint32_t fast = 1u << 23;
    uint32_t slow = 1u << 23;
    uint32_t seen = 0;  // observations so far, counted during warm-up only

    static constexpr uint32_t kStateOne = (1u << 24) - 1;

    // P(bit = 0) for the coder, in kProbBits precision and clamped.
    uint32_t p0() const {
        uint32_t p = kProbOne - ((fast + slow) >> 10);  // 24+24 bits -> 15 bits
        if (p < kProbMin) p = kProbMin;
        if (p > kProbMax) p = kProbMax;
        return p;
    }

    void update(unsigned bit, const Adaptation& rate) {
        int fs = rate.fast_shift;
        int ss = rate.slow_shift;
        if (seen < rate.warmup) {
            // Warm-up: the step is about 1/(n+2) after n observations until it reaches the rate.
            const int w = 31 - __builtin_clz(seen + 2u);
            fs = w < fs ? w : fs;
            ss = w < ss ? w : ss;
            ++seen;
        }
        // Branch-free: move each estimate a fraction of the way to 0 or to one.
        const int32_t target = static_cast<int32_t>(kStateOne & (0u - bit));
        fast = static_cast<uint32_t>(static_cast<int32_t>(fast) + ((target - static_cast<int32_t>(fast)) >> fs));
        slow = static_cast<uint32_t>(static_cast<int32_t>(slow) + ((target - static_cast<int32_t>(slow)) >> ss));
    }
};

// Estimated cost in bits of coding `bit` with `ctx` (for rate-distortion decisions):
// -log2 of the coding probability, from a table over 2^12 probability cells.
float bit_cost(const ContextModel& ctx, unsigned bit);

class ArithEncoder {
public:
    ArithEncoder(std::vector<uint8_t>& out, Adaptation rate) : out_(out), rate_(rate) {}

    void encode(unsigned bit, ContextModel& ctx) {
        const uint32_t bound = (range_ >> kProbBits) * ctx.p0();
        if (bit) {
            low_ += bound;
            range_ -= bound;
        } else {
            range_ = bound;
        }
        ctx.update(bit, rate_);
        while (range_ < kTop) {
            range_ <<= 8;
            shift_low();
        }
    }

    // Equiprobable bins, most significant first.
    void encode_bypass(uint32_t value, int nbits) {
        for (int i = nbits - 1; i >= 0; --i) {
            range_ >>= 1;
            if ((value >> i) & 1u) low_ += range_;
            while (range_ < kTop) {
                range_ <<= 8;
                shift_low();
            }
        }
    }

    void finish() {
        for (int i = 0; i < 5; ++i) shift_low();
    }

private:
    static constexpr uint32_t kTop = 1u << 24;

    void shift_low() {
        if (static_cast<uint32_t>(low_) < 0xFF000000u || (low_ >> 32) != 0) {
            const auto carry = static_cast<uint8_t>(low_ >> 32);
            uint8_t byte = cache_;
            do {
                out_.push_back(static_cast<uint8_t>(byte + carry));
                byte = 0xFF;
            } while (--pending_ != 0);
            cache_ = static_cast<uint8_t>(low_ >> 24);
        }
        ++pending_;
        low_ = (low_ & 0x00FFFFFFu) << 8;
    }

    std::vector<uint8_t>& out_;
    Adaptation rate_;
    uint64_t low_ = 0;
    uint32_t range_ = 0xFFFFFFFFu;
    uint8_t cache_ = 0;
    uint64_t pending_ = 1;
};

class ArithDecoder {
public:
    ArithDecoder(const uint8_t* data, std::size_t size, Adaptation rate) : data_(data), size_(size), rate_(rate) {
        for (int i = 0; i < 5; ++i) code_ = (code_ << 8) | next_byte();
    }

    unsigned decode(ContextModel& ctx) {
        const uint32_t bound = (range_ >> kProbBits) * ctx.p0();
        // Branch-free symbol decision: the bins are unpredictable by design.
        const unsigned bit = code_ >= bound;
        const uint32_t mask = 0u - bit;
        code_ -= bound & mask;
        range_ = (bound & ~mask) | ((range_ - bound) & mask);
        ctx.update(bit, rate_);
        while (range_ < kTop) {
            range_ <<= 8;
            code_ = (code_ << 8) | next_byte();
        }
        return bit;
    }

    uint32_t decode_bypass(int nbits) {
        uint32_t value = 0;
        for (int i = 0; i < nbits; ++i) {
            range_ >>= 1;
            unsigned bit = 0;
            if (code_ >= range_) {
                code_ -= range_;
                bit = 1;
            }
            value = (value << 1) | bit;
            while (range_ < kTop) {
                range_ <<= 8;
                code_ = (code_ << 8) | next_byte();
            }
        }
        return value;
    }

    // Bytes consumed; the encoder's flush makes this equal the stream size when
    // the stream was decoded with the same symbol count it was written with.
    std::size_t consumed() const { return pos_; }
    bool overrun() const { return pos_ > size_; }

private:
    static constexpr uint32_t kTop = 1u << 24;

    uint32_t next_byte() {
        // Past the end we feed zeros and count; callers check overrun() and fail.
        const uint32_t b = pos_ < size_ ? data_[pos_] : 0u;
        ++pos_;
        return b;
    }

    const uint8_t* data_;
    std::size_t size_;
    Adaptation rate_;
    std::size_t pos_ = 0;
    uint32_t code_ = 0;
    uint32_t range_ = 0xFFFFFFFFu;
};

}  // namespace nnsqueeze
