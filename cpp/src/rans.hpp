// Internal to the rANS coders (byte planes, level tokens): the state discipline and one coding
// step in each direction, shared so that both coders speak the same rANS.
//
// States are 32 bits, kept in [2^15, 2^31); frequencies are 12-bit (they sum to 2^12) and the
// coder renormalises by 16-bit words, so one symbol moves a state by at most one word in either
// direction and renormalisation is a single test.  Four states interleave: element i uses state
// i mod 4, and all of them share one word stream.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnsqueeze/arith.hpp"

namespace nnsqueeze::detail {

inline constexpr int kRansProbBits = 12;
inline constexpr uint32_t kRansProbOne = 1u << kRansProbBits;
inline constexpr uint32_t kRansSlotMask = kRansProbOne - 1;
inline constexpr int kRansLanes = 4;
inline constexpr uint32_t kRansStateLow = 1u << 15;
inline constexpr std::size_t kRansStateBytes = 4 * kRansLanes;

// Encoder view of one symbol: division by the frequency as a multiply and shift.
struct RansEncSymbol {
    uint32_t x_max = 0;  // states at or above this shed a word before coding the symbol
    uint32_t rcp = 0;    // ceil(2^(31 + shift) / freq): x / freq = (x * rcp) >> (31 + shift) for x < 2^31
    uint32_t shift = 0;
    uint32_t bias = 0;   // cumulative frequency
    uint32_t cmpl = 0;   // 2^12 - freq
};

inline RansEncSymbol rans_enc_symbol(uint32_t cum, uint32_t freq) {
    uint32_t shift = 0;
    while ((1u << shift) < freq) ++shift;
    const uint64_t rcp = ((uint64_t{1} << (31 + shift)) + freq - 1) / freq;
    return {freq << (31 - kRansProbBits), static_cast<uint32_t>(rcp), 31 + shift, cum, kRansProbOne - freq};
}

// Writes the words of a backwards encoding pass from the end of a buffer with room for one word per
// symbol plus one; the caller reverses nothing, words come out in reading order.
class RansWordSink {
public:
    explicit RansWordSink(std::size_t symbols) : words_(symbols + 1), w_(words_.data() + words_.size()) {
        state_.fill(kRansStateLow);
    }

    // Codes the symbols `at(n - 1)`, ..., `at(0)` of a run whose element i uses state i mod 4 (the
    // encoding runs from the last symbol to the first).  The four states stay in registers and the
    // lane of each element is fixed by the unrolling, so no index is computed per symbol.
    template <class SymbolAt>
    void put_run(std::size_t n, SymbolAt&& at) {
        uint32_t x0 = state_[0], x1 = state_[1], x2 = state_[2], x3 = state_[3];
        uint16_t* w = w_;
        const std::size_t whole = n & ~std::size_t{kRansLanes - 1};
        if (n - whole == 3) put(x2, at(whole + 2), w);
        if (n - whole >= 2) put(x1, at(whole + 1), w);
        if (n - whole >= 1) put(x0, at(whole), w);
        for (std::size_t i = whole; i != 0; i -= kRansLanes) {
            put(x3, at(i - 1), w);
            put(x2, at(i - 2), w);
            put(x1, at(i - 3), w);
            put(x0, at(i - 4), w);
        }
        state_ = {x0, x1, x2, x3};
        w_ = w;
    }

    // Appends the four final states (little-endian) and the words.
    void finish(std::vector<uint8_t>& stream) const {
        const auto num_words = static_cast<std::size_t>(words_.data() + words_.size() - w_);
        const std::size_t start = stream.size();
        stream.resize(start + kRansStateBytes + 2 * num_words);
        uint8_t* p = stream.data() + start;
        for (uint32_t x : state_) {
            for (int b = 0; b < 4; ++b) *p++ = static_cast<uint8_t>(x >> (8 * b));
        }
        for (std::size_t k = 0; k < num_words; ++k) {
            *p++ = static_cast<uint8_t>(w_[k]);
            *p++ = static_cast<uint8_t>(w_[k] >> 8);
        }
    }

private:
    // One symbol on state `x`, its word (if any) written below `w`.
    static void put(uint32_t& x, const RansEncSymbol& e, uint16_t*& w) {
        // Branch-free renormalisation: whether a word is shed is a coin flip on dense data.  The
        // store is harmless when not kept: fewer words than symbols were written so far.
        const uint32_t shed = x >= e.x_max;
        w[-1] = static_cast<uint16_t>(x);
        w -= shed;
        x >>= 16 * shed;
        const auto q = static_cast<uint32_t>((static_cast<uint64_t>(x) * e.rcp) >> e.shift);
        x += e.bias + q * e.cmpl;
    }

    std::vector<uint16_t> words_;
    uint16_t* w_;
    std::array<uint32_t, kRansLanes> state_{};
};

// Decoder side: the four states and the word stream they read from.
class RansSource {
public:
    // Throws BitstreamError (with `what` naming the payload) for a stream too short, of odd length
    // or with a state out of range.
    RansSource(const uint8_t* stream, std::size_t size, const char* what) : what_(what) {
        if (size < kRansStateBytes || (size - kRansStateBytes) % 2 != 0) fail("bad rANS stream length");
        for (int lane = 0; lane < kRansLanes; ++lane) {
            uint32_t x = 0;
            for (int b = 0; b < 4; ++b) x |= static_cast<uint32_t>(stream[4 * lane + b]) << (8 * b);
            if (x < kRansStateLow || x >= (1u << 31)) fail("rANS state out of range");
            state[static_cast<std::size_t>(lane)] = x;
        }
        p = stream + kRansStateBytes;
        end = stream + size;
    }

    // The state after a symbol of frequency `freq` whose slot is `offset` past its start, refilled.
    // The caller guarantees a word is left (see words_left).
    static uint32_t advance(uint32_t x, uint32_t freq, uint32_t offset, const uint8_t*& p) {
        x = freq * (x >> kRansProbBits) + offset;
        if (x < kRansStateLow) {
            x = x << 16 | static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
            p += 2;
        }
        return x;
    }

    std::size_t words_left() const { return static_cast<std::size_t>(end - p) / 2; }

    // Decoding runs the encoder backwards: every state returns to its start and every word is read.
    void check_finished() const {
        if (p != end) fail("rANS stream has trailing bytes");
        for (uint32_t x : state)
            if (x != kRansStateLow) fail("rANS stream is corrupt (final state)");
    }

    [[noreturn]] void fail(const char* problem) const {
        throw BitstreamError(std::string(what_) + ": " + problem);
    }

    std::array<uint32_t, kRansLanes> state{};
    const uint8_t* p = nullptr;
    const uint8_t* end = nullptr;

private:
    const char* what_;
};

}  // namespace nnsqueeze::detail
