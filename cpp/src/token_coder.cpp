#include "nnsqueeze/token_coder.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "nnsqueeze/arith.hpp"
#include "nnsqueeze/level_coder.hpp"
#include "payload_bytes.hpp"
#include "rans.hpp"

namespace nnsqueeze {
namespace {

using detail::kRansProbBits;
using detail::kRansProbOne;
using detail::kRansSlotMask;

constexpr int kDirect = 16;     // tokens below this are the magnitude itself
constexpr int kRowLag = 4;      // the row magnitude seen by an element stops this many positions back
constexpr int kRowShift = 8;    // row magnitude: mean over the last ~256 levels
constexpr int kColShift = 5;    // column magnitude: mean over the last ~32 rows
constexpr int kFixedBits = 8;   // magnitudes are tracked as min(|q|, 2^16) * 2^8
constexpr uint32_t kMagCap = 1u << 16;
constexpr std::size_t kBitmapBytes = (kTokenClasses + 7) / 8;
// Slot entries of classes without a table: bit 31, which no real entry has (frequencies are at most
// kMaxTokenFreq < 2^12), marks them, and token 127 has no magnitude bits.
constexpr uint32_t kAbsentMark = 1u << 31;
constexpr uint32_t kAbsentEntry = kAbsentMark | 127u;

// 4 * (msb(x) + 127) plus the two bits below x's leading one, for the tracked magnitudes and their
// running means (1 <= x <= kMagCap << kFixedBits = 2^24), and 0 for x = 0.  Up to 2^24 the conversion
// to float is exact, so these are the float's bits from 21 up: its exponent and the top two bits of
// its mantissa.  (Cheaper than clz and a variable shift, and the column loops vectorize.)
inline uint32_t float_quarters(uint32_t x) {
    const float f = static_cast<float>(static_cast<int32_t>(x));
    uint32_t bits = 0;
    std::memcpy(&bits, &f, sizeof bits);
    return bits >> 21;
}
constexpr int kFloatQuarterBias = 4 * 127;

// 4 * log2(x) with two fractional bits, 0 for x <= 1 (x <= 2^24).
inline int log2_quarter(uint32_t x) { return std::max(static_cast<int>(float_quarters(x)) - kFloatQuarterBias, 0); }

int bit_length(uint64_t x) { return x == 0 ? 0 : 64 - __builtin_clzll(x); }

uint32_t tracked(uint32_t mag) { return std::min(mag, kMagCap) << kFixedBits; }

// The token of a magnitude and the number of raw bits below it.
inline uint32_t token_of(uint32_t mag, int& extra) {
    if (mag < kDirect) {
        extra = 0;
        return mag;
    }
    const int n = 31 - __builtin_clz(mag);
    extra = n - 2;
    return kDirect + 4 * static_cast<uint32_t>(n - 4) + ((mag >> (n - 2)) & 3u);
}

// The context class of an element is clamp((L(R) + T) >> 1, 0, 19): log2(row magnitude R * column
// magnitude / mean) in half octaves, where T = L(column) - L(mean) - 16 carries the column and the
// mean, so that 2^-4 expected |q| maps to class 0.  The coders keep T + kTermBias (>= 0) per column
// and look the class up at float_quarters(R) + T + kTermBias: for R >= 1 that is L(R) + T + 620, at
// least 508; for R = 0 it is T + 112, below 508.  One addition and a load instead of a max, a shift
// and a clamp.
constexpr int kMaxLog = 4 * 24;                          // L(2^24)
constexpr int kTermBias = kMaxLog + 4 * (kFixedBits - 4);  // -T at most: L(column) 0, L(mean) 96
struct ClassTable {
    std::array<uint8_t, kFloatQuarterBias + kMaxLog + 1 + 2 * kTermBias> of{};
    ClassTable() {
        for (std::size_t u = 0; u < of.size(); ++u) {
            const int sum = u < static_cast<std::size_t>(kFloatQuarterBias)
                                ? static_cast<int>(u) - kTermBias                       // R = 0: L(R) = 0
                                : static_cast<int>(u) - kTermBias - kFloatQuarterBias;  // L(R) + T
            of[u] = static_cast<uint8_t>(std::clamp(sum >> 1, 0, kTokenClasses - 1));
        }
    }
};
const ClassTable kClassTable;

inline int scale_class(uint32_t row_mag, int biased_term) {
    return kClassTable.of[float_quarters(row_mag) + static_cast<uint32_t>(biased_term)];
}

// The row magnitude after taking in the tracked magnitude of a row position whose shift is `shift`
// (TokenContext::row_shifts).  Both magnitudes are below 2^25, so the difference fits 32 bits.
inline uint32_t next_row_mag(uint32_t row_mag, uint32_t tracked_mag, int shift) {
    return static_cast<uint32_t>(static_cast<int32_t>(row_mag) +
                                 ((static_cast<int32_t>(tracked_mag) - static_cast<int32_t>(row_mag)) >> shift));
}

// Context state of one chunk across rows: column magnitudes and the running mean.  Within a row the
// coders keep the row magnitude themselves (in a register) with scale_class and next_row_mag, and
// record each element's tracked magnitude in mags(); element c sees the row magnitude after positions
// 0 .. c - kRowLag.  Encoder and decoder run the same code, exact integer arithmetic (the float
// conversion in float_quarters is exact), so they agree everywhere.
class TokenContext {
public:
    explicit TokenContext(std::size_t cols)
        : col_mag_(cols, 0), col_term_(cols, 0), mags_(cols, 0), row_shift_(cols, kRowShift) {
        // Row position src moves the row magnitude by 1/2^bit_length(src + 1) while src + 1 < 256
        // (roughly a running average over the first levels), by 1/256 after.
        for (std::size_t src = 0; src < cols && src + 1 < (std::size_t{1} << kRowShift); ++src)
            row_shift_[src] = static_cast<uint8_t>(bit_length(src + 1));
    }

    // Call before the row's first element; returns the row magnitude the row starts from.
    uint32_t start_row(std::size_t row) {
        const uint32_t mean = count_ == 0 ? 0 : static_cast<uint32_t>(sum_ / count_);
        const int base = log2_quarter(mean) + 4 * (kFixedBits - 4) - kTermBias;
        const std::size_t cols = col_term_.size();
        int16_t* __restrict term = col_term_.data();
        if (row == 0) {
            std::fill(term, term + cols, static_cast<int16_t>(kTermBias - 4 * (kFixedBits - 4)));
        } else {
            const uint32_t* __restrict col = col_mag_.data();
            for (std::size_t c = 0; c < cols; ++c) term[c] = static_cast<int16_t>(log2_quarter(col[c]) - base);
        }
        row_ = row;
        return mean;
    }

    const int16_t* col_terms() const { return col_term_.data(); }
    const uint8_t* row_shifts() const { return row_shift_.data(); }
    uint32_t* mags() { return mags_.data(); }

    // After the row's last element.
    void finish_row() {
        const std::size_t cols = mags_.size();
        const uint32_t* __restrict mags = mags_.data();
        uint32_t* __restrict col = col_mag_.data();
        uint64_t sum = 0;
        if (row_ == 0) {
            for (std::size_t c = 0; c < cols; ++c) {
                sum += mags[c];
                col[c] = mags[c];
            }
        } else {
            const int cs = std::min(bit_length(row_), kColShift);
            for (std::size_t c = 0; c < cols; ++c) {
                sum += mags[c];
                col[c] = next_row_mag(col[c], mags[c], cs);  // the same running-mean step, per column
            }
        }
        sum_ += sum;
        count_ += cols;
    }

private:
    std::vector<uint32_t> col_mag_;
    std::vector<int16_t> col_term_;
    std::vector<uint32_t> mags_;
    std::vector<uint8_t> row_shift_;
    uint64_t sum_ = 0, count_ = 0;
    std::size_t row_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Raw bits, least significant first within each byte.

class BitWriter {
public:
    explicit BitWriter(std::vector<uint8_t>& out) : out_(out) {}
    // Appends the low `nbits` bits of `value` (nbits <= 28, value below 2^nbits; nbits may be 0, so
    // callers need not branch on whether an element has bits).  Whole 32-bit words go out at once.
    void put(uint32_t value, int nbits) {
        acc_ |= static_cast<uint64_t>(value) << fill_;
        fill_ += nbits;
        if (fill_ >= 32) {
            const auto word = static_cast<uint32_t>(acc_);
            for (int b = 0; b < 4; ++b) out_.push_back(static_cast<uint8_t>(word >> (8 * b)));
            acc_ >>= 32;
            fill_ -= 32;
        }
    }
    void finish() {
        for (; fill_ > 0; fill_ -= 8) {
            out_.push_back(static_cast<uint8_t>(acc_));
            acc_ >>= 8;
        }
        acc_ = 0;
        fill_ = 0;
    }

private:
    std::vector<uint8_t>& out_;
    uint64_t acc_ = 0;
    int fill_ = 0;
};

// Reads a section of raw bits by position: a read is a load at the position's byte and a shift, so
// consecutive reads do not wait on each other (only the position, one addition, carries over).  The
// decoder reads from a copy padded with zero bytes (PaddedBits), so reads need no bounds check.
class BitSection {
public:
    BitSection(const uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    // The bits from bit position `pos` on, at least 57 of them; the caller guarantees 8 readable
    // bytes from pos / 8 (past the section's end they are the copy's zero padding).
    uint64_t from(uint64_t pos) const {
        uint64_t word = 0;
        std::memcpy(&word, data_ + (pos >> 3), 8);
        return word >> (pos & 7);
    }

    // `read` bits were taken: every byte must have been read and the last one's padding be zero, so
    // that each level sequence has one encoding.
    void check_finished(uint64_t read, const char* what) const {
        if ((read + 7) / 8 != size_) {
            throw BitstreamError(std::string("token payload: ") + what +
                                 (read > 8 * size_ ? " end early" : " have trailing bytes"));
        }
        if (read % 8 != 0 && (data_[size_ - 1] >> (read % 8)) != 0)
            throw BitstreamError(std::string("token payload: nonzero padding in the ") + what);
    }

private:
    const uint8_t* data_;
    std::size_t size_;
};

// Magnitude of each token before its raw bits, and how many raw bits follow; tokens past the last
// (only in the slot tables of classes without a table) are flagged.
struct TokenTable {
    std::array<uint32_t, 128> base{};
    std::array<uint32_t, 128> extra{};
    std::array<uint32_t, 128> mask{};  // (1 << extra) - 1
    TokenTable() {
        for (uint32_t t = 0; t < kTokens; ++t) {
            if (t < static_cast<uint32_t>(kDirect)) {
                base[t] = t;
                continue;
            }
            const uint32_t n = ((t - kDirect) >> 2) + 4;
            base[t] = (4u | ((t - kDirect) & 3u)) << (n - 2);
            extra[t] = n - 2;
            mask[t] = (1u << (n - 2)) - 1;
        }
    }
};
const TokenTable kTokenTable;

// ---------------------------------------------------------------------------------------------
// Frequency tables

using TokenCounts = std::array<uint64_t, kTokens>;
using TokenFreqs = std::array<uint32_t, kTokens>;

// Frequency tables are coded in units of 2^shift (shift 0..7): classes seen rarely save table bits
// with coarse frequencies, frequent ones keep full precision.
constexpr int kMaxUnitShift = 7;
constexpr int kMaxGolombOrder = 15;

// Frequencies in units of 2^shift summing to 2^(12 - shift), every counted token at least one unit
// and none above kMaxTokenFreq; needs n > 0.  A class with one token gives the rest of the sum to a
// neighbouring token.
TokenFreqs normalize(const TokenCounts& counts, uint64_t n, int shift) {
    const uint32_t total = kRansProbOne >> shift;
    const uint32_t cap = kMaxTokenFreq >> shift;
    TokenFreqs f{};
    uint32_t sum = 0;
    for (int t = 0; t < kTokens; ++t) {
        if (counts[t] == 0) continue;
        const uint64_t scaled = (counts[t] * total + n / 2) / n;
        f[t] = static_cast<uint32_t>(std::clamp<uint64_t>(scaled, 1, cap));
        sum += f[t];
    }
    // Settle the rounding on the most frequent tokens, where it costs the least.  More tokens than
    // units (a coarse shift on a wide class) cannot be settled: the caller skips such shifts.
    while (sum != total) {
        const auto largest = static_cast<std::size_t>(std::max_element(f.begin(), f.end()) - f.begin());
        if (sum > total) {
            if (f[largest] == 1) return TokenFreqs{};
            const uint32_t cut = std::min(sum - total, f[largest] - 1);
            f[largest] -= cut;
            sum -= cut;
            continue;
        }
        const uint32_t room = cap - f[largest];
        if (room > 0) {
            const uint32_t add = std::min(total - sum, room);
            f[largest] += add;
            sum += add;
            continue;
        }
        // The largest is at the cap: the rest goes to the token after it (or before the last one).
        const std::size_t other = largest + 1 < kTokens ? largest + 1 : largest - 1;
        f[other] += total - sum;
        sum = total;
    }
    return f;
}

int golomb_bits(uint32_t v, int k) {
    const uint32_t w = v + (1u << k);
    return 2 * (32 - __builtin_clz(w)) - 1 - k;
}

// Writes Exp-Golomb order k: (n - 1 - k) zeros, then the n bits of v + 2^k, most significant first.
void put_golomb(BitWriter& out, uint32_t v, int k) {
    const uint32_t w = v + (1u << k);
    const int n = 32 - __builtin_clz(w);
    for (int i = 0; i < n - 1 - k; ++i) out.put(0, 1);
    for (int i = n - 1; i >= 0; --i) out.put((w >> i) & 1u, 1);
}

struct CodedTable {
    TokenFreqs freq{};  // full precision (sum 2^12)
    int used = 0;       // highest token with a frequency, plus one
    int shift = 0;
    int order = 0;
};

// The table of one class that minimises table bits plus the bits its counts cost under it.
CodedTable choose_table(const TokenCounts& counts, uint64_t n) {
    CodedTable best;
    double best_bits = 0;
    for (int shift = 0; shift <= kMaxUnitShift; ++shift) {
        const TokenFreqs f = normalize(counts, n, shift);
        int used = kTokens;
        while (used > 0 && f[static_cast<std::size_t>(used - 1)] == 0) --used;
        if (used == 0) continue;  // more tokens than units
        double bits = 0;
        for (int t = 0; t < used; ++t) {
            if (counts[t]) bits += static_cast<double>(counts[t]) * (kRansProbBits - shift - std::log2(static_cast<double>(f[t])));
        }
        int order = 0;
        int table_bits = 1 << 30;
        for (int k = 0; k <= kMaxGolombOrder; ++k) {
            int b = 0;
            for (int t = 0; t + 1 < used; ++t) b += golomb_bits(f[static_cast<std::size_t>(t)], k);
            if (b < table_bits) {
                table_bits = b;
                order = k;
            }
        }
        bits += table_bits + 14;
        if (best.used == 0 || bits < best_bits) {
            best_bits = bits;
            best.used = used;
            best.shift = shift;
            best.order = order;
            for (int t = 0; t < kTokens; ++t) best.freq[t] = f[t] << shift;
        }
    }
    return best;
}

// Slot entry: token (7 bits) | offset of the slot in the token's range (12 bits) | frequency (12 bits,
// at most kMaxTokenFreq) | kAbsentMark for classes without a table.
constexpr int kOffsetShift = 7;
constexpr int kFreqShift = 19;

struct SlotTables {
    std::array<uint32_t, static_cast<std::size_t>(kTokenClasses) * kRansProbOne> slot;
};

// Bits of the table section, least significant first within each byte; every read is checked.
class TableBits {
public:
    TableBits(const uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    uint32_t bit() {
        if (pos_ >= 8 * size_) throw BitstreamError("token payload: frequency tables end early");
        const uint32_t b = data_[pos_ >> 3] >> (pos_ & 7) & 1u;
        ++pos_;
        return b;
    }
    uint32_t bits(int n) {  // n bits, least significant first
        uint32_t v = 0;
        for (int i = 0; i < n; ++i) v |= bit() << i;
        return v;
    }
    uint32_t golomb(int k) {
        int zeros = 0;
        while (bit() == 0) {
            if (++zeros > 20) throw BitstreamError("token payload: Exp-Golomb code too long in a frequency table");
        }
        uint32_t w = 1;
        for (int i = 0; i < zeros + k; ++i) w = w << 1 | bit();
        return w - (1u << k);
    }
    // All bits read but the zero padding of the last byte.
    void check_finished() const {
        if ((pos_ + 7) / 8 != size_) throw BitstreamError("token payload: frequency tables have trailing bytes");
        if (pos_ % 8 != 0 && (data_[size_ - 1] >> (pos_ % 8)) != 0)
            throw BitstreamError("token payload: nonzero padding after the frequency tables");
    }

private:
    const uint8_t* data_;
    std::size_t size_;
    uint64_t pos_ = 0;
};

void read_tables(detail::PayloadReader& in, SlotTables& tables) {
    const uint8_t* bitmap = in.take(kBitmapBytes, "class bitmap");
    if constexpr (kTokenClasses % 8 != 0) {
        if (bitmap[kBitmapBytes - 1] >> (kTokenClasses % 8) != 0)
            throw BitstreamError("token payload: class bitmap names classes past the last");
    }
    const uint64_t table_bytes = in.uvarint("frequency table length");
    if (table_bytes > in.left()) throw BitstreamError("token payload ends early (frequency tables)");
    TableBits bits(in.take(static_cast<std::size_t>(table_bytes), "frequency tables"), static_cast<std::size_t>(table_bytes));
    std::array<uint32_t, kTokens> freq{};
    for (int cls = 0; cls < kTokenClasses; ++cls) {
        uint32_t* slot = tables.slot.data() + static_cast<std::size_t>(cls) * kRansProbOne;
        if (!(bitmap[cls >> 3] >> (cls & 7) & 1u)) {
            std::fill(slot, slot + kRansProbOne, kAbsentEntry);
            continue;
        }
        const uint32_t used = bits.bits(7) + 1;
        const int shift = static_cast<int>(bits.bits(3));
        const int order = static_cast<int>(bits.bits(4));
        if (used > kTokens) throw BitstreamError("token payload: bad token count in a frequency table");
        const uint32_t total = kRansProbOne >> shift;
        uint32_t sum = 0;
        for (uint32_t t = 0; t + 1 < used; ++t) {
            const uint32_t g = bits.golomb(order);
            if (g > total - sum) throw BitstreamError("token payload: frequencies do not sum to 4096");
            freq[t] = g << shift;
            sum += g;
        }
        if (sum >= total) throw BitstreamError("token payload: frequencies do not sum to 4096");
        freq[used - 1] = (total - sum) << shift;  // the last token takes the rest
        uint32_t cum = 0;
        for (uint32_t t = 0; t < used; ++t) {
            const uint32_t f = freq[t];
            if (f > kMaxTokenFreq) throw BitstreamError("token payload: a frequency above 4080 in a table");
            for (uint32_t k = 0; k < f; ++k) slot[cum + k] = t | k << kOffsetShift | f << kFreqShift;
            cum += f;
        }
    }
    bits.check_finished();
}

// The slot tables are large (640 KB): one per thread, reused across calls.
SlotTables& thread_tables() {
    thread_local std::unique_ptr<SlotTables> tables = std::make_unique<SlotTables>();
    return *tables;
}

// A raw section copied with `padding` zero bytes after it, so that reads from any position up to
// `padding` - 8 bytes past its end stay in the copy.
class PaddedBits {
public:
    PaddedBits(const uint8_t* data, std::size_t size, std::size_t padding) : bytes_(size + padding, 0), size_(size) {
        if (size) std::memcpy(bytes_.data(), data, size);
    }
    BitSection section() const { return {bytes_.data(), size_}; }

private:
    std::vector<uint8_t> bytes_;
    std::size_t size_;
};

// The two raw sections and the positions read so far.
struct RawBits {
    BitSection signs;
    BitSection magnitude;
    uint64_t sign_pos = 0;
    uint64_t magnitude_pos = 0;
};

// Decodes row `row` into `levels` (cols of them); Checked guards every rANS word, for rows near the
// end of a possibly truncated payload.  Raw bits come from padded copies (see decode_to).  Column c
// uses rANS state c mod 4.  All state lives in locals so that it stays in registers.  Returns false
// if an element fell into a class without a table.
template <bool Checked>
bool decode_row(TokenContext& ctx, std::size_t row, const uint32_t* __restrict slot, detail::RansSource& rans,
                RawBits& raw, std::size_t cols, int32_t* __restrict levels) {
    uint32_t row_mag = ctx.start_row(row);
    const int16_t* __restrict col_term = ctx.col_terms();
    const uint8_t* __restrict row_shift = ctx.row_shifts();
    uint32_t* __restrict mags = ctx.mags();
    const uint8_t* p = rans.p;
    const uint8_t* const end = rans.end;
    uint64_t magnitude_pos = raw.magnitude_pos, sign_pos = raw.sign_pos;
    uint32_t absent = 0;
    // One element; Lagged: the row magnitude takes in the element kRowLag - 1 positions back (from
    // the fourth element on, so the first ones skip the test).
    auto step = [&](uint32_t& x, std::size_t c, auto lagged) {
        const uint32_t e = slot[static_cast<std::size_t>(scale_class(row_mag, col_term[c])) << kRansProbBits |
                                (x & kRansSlotMask)];
        const uint32_t tok = e & 127u;
        uint32_t next = (e >> kFreqShift) * (x >> kRansProbBits) + (e >> kOffsetShift & kRansSlotMask);
        if constexpr (Checked) {
            if (next < detail::kRansStateLow) {
                if (end - p < 2) rans.fail("rANS stream ends early");
                next = next << 16 | static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
                p += 2;
            }
        } else {
            // Branch-free refill: whether a word is needed is a coin flip on dense tensors.
            const uint32_t need = next < detail::kRansStateLow;
            const uint32_t word = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
            next = need ? next << 16 | word : next;
            p += 2 * need;
        }
        x = next;
        absent |= e;
        // Branch-free: at fine steps most tokens carry raw bits, at coarse ones few do.
        const uint32_t mag = kTokenTable.base[tok] +
                             (static_cast<uint32_t>(raw.magnitude.from(magnitude_pos)) & kTokenTable.mask[tok]);
        magnitude_pos += kTokenTable.extra[tok];
        const uint32_t signed_ = tok != 0;
        const auto negative = static_cast<uint32_t>(raw.signs.from(sign_pos)) & signed_;
        sign_pos += signed_;
        const auto q = static_cast<int32_t>(mag), minus = -static_cast<int32_t>(negative);
        levels[c] = (q ^ minus) - minus;  // -q when negative, without a select
        mags[c] = tracked(mag);
        if constexpr (decltype(lagged)::value)
            row_mag = next_row_mag(row_mag, mags[c + 1 - kRowLag], row_shift[c + 1 - kRowLag]);
    };
    constexpr std::false_type early;
    constexpr std::true_type lagged;
    std::array<uint32_t, detail::kRansLanes>& st = rans.state;
    uint32_t x0 = st[0], x1 = st[1], x2 = st[2], x3 = st[3];
    std::size_t c = 0;
    if (cols >= 4) {
        step(x0, 0, early);
        step(x1, 1, early);
        step(x2, 2, early);
        step(x3, 3, lagged);
        for (c = 4; c + 4 <= cols; c += 4) {
            step(x0, c, lagged);
            step(x1, c + 1, lagged);
            step(x2, c + 2, lagged);
            step(x3, c + 3, lagged);
        }
        if (c < cols) step(x0, c++, lagged);
        if (c < cols) step(x1, c++, lagged);
        if (c < cols) step(x2, c++, lagged);
    } else {  // fewer than kRowLag columns: the row magnitude never moves
        if (c < cols) step(x0, c++, early);
        if (c < cols) step(x1, c++, early);
        if (c < cols) step(x2, c++, early);
    }
    st = {x0, x1, x2, x3};
    rans.p = p;
    raw.magnitude_pos = magnitude_pos;
    raw.sign_pos = sign_pos;
    ctx.finish_row();
    return (absent & kAbsentMark) == 0;
}

template <class Sink>
void decode_to(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols, Sink sink) {
    if (cols == 0) rows = 0;
    const std::size_t count = rows * cols;
    if (count == 0) {
        if (size != 0) throw BitstreamError("token payload of an empty tensor is not empty");
        return;
    }
    detail::PayloadReader in(data, size, "token payload");
    SlotTables& tables = thread_tables();
    read_tables(in, tables);
    const uint64_t stream_bytes = in.uvarint("rANS stream length");
    if (stream_bytes > in.left()) throw BitstreamError("token payload ends early (rANS stream)");
    const uint8_t* stream = in.take(static_cast<std::size_t>(stream_bytes), "rANS stream");
    detail::RansSource rans(stream, static_cast<std::size_t>(stream_bytes), "token payload");
    const uint64_t sign_bytes = in.uvarint("sign section length");
    if (sign_bytes > in.left()) throw BitstreamError("token payload ends early (signs)");
    const uint8_t* signs = in.take(static_cast<std::size_t>(sign_bytes), "signs");
    const std::size_t magnitude_bytes = in.left();
    const uint8_t* magnitude = in.take(magnitude_bytes, "magnitude bits");
    // An element reads at most one rANS word, 27 magnitude bits and one sign.  The raw sections are
    // read from copies with a row's worth of zero padding, and each row starts inside them (checked
    // below), so raw reads need no bounds checks; past a section's end they read the zeros an
    // unpadded reader would, and check_finished refuses the payload.  Rows near the end of the rANS
    // stream check each word.
    const PaddedBits sign_copy(signs, static_cast<std::size_t>(sign_bytes), cols / 8 + 16);
    const PaddedBits magnitude_copy(magnitude, magnitude_bytes, 4 * cols + 16);
    RawBits raw{sign_copy.section(), magnitude_copy.section()};
    TokenContext ctx(cols);
    // Rows decode into a buffer and go to the sink whole: the element loop keeps fewer registers and
    // the sink's loop vectorizes.
    std::vector<int32_t> row_levels(cols);
    const std::size_t row_words = 2 * cols;
    int32_t* out = row_levels.data();
    const uint32_t* slot = tables.slot.data();
    for (std::size_t r = 0; r < rows; ++r) {
        if (raw.sign_pos > 8 * sign_bytes) raw.signs.check_finished(raw.sign_pos, "signs");
        if (raw.magnitude_pos > 8 * magnitude_bytes) raw.magnitude.check_finished(raw.magnitude_pos, "magnitude bits");
        const bool roomy = static_cast<std::size_t>(rans.end - rans.p) >= row_words;
        const bool tabled = roomy ? decode_row<false>(ctx, r, slot, rans, raw, cols, out)
                                  : decode_row<true>(ctx, r, slot, rans, raw, cols, out);
        if (!tabled) throw BitstreamError("token payload: element in a context class without a table");
        sink(r * cols, out, cols);
    }
    rans.check_finished();
    raw.signs.check_finished(raw.sign_pos, "signs");
    raw.magnitude.check_finished(raw.magnitude_pos, "magnitude bits");
}

}  // namespace

uint64_t max_elements_for_token_payload(std::size_t payload_bytes) {
    // An element costs at least log2(4096 / 4080) > 1/178 bit; the final states and the minimal
    // table are not free either.
    return (static_cast<uint64_t>(payload_bytes) + 1) * 8 * 178;
}

void encode_tokens(const int32_t* levels, std::size_t rows, std::size_t cols, std::vector<uint8_t>& out) {
    if (cols == 0) rows = 0;
    const std::size_t count = rows * cols;
    if (count == 0) return;
    // Pass 1: contexts, tokens and raw bits in scan order, and the counts of each class.
    // Each element's symbol: class * kTokens + token, the index of its rANS symbol and of its count.
    static_assert(kTokenClasses * kTokens <= 65536);
    std::vector<uint16_t> symbol_of(count);
    std::vector<uint64_t> symbol_counts(static_cast<std::size_t>(kTokenClasses) * kTokens, 0);
    std::vector<uint8_t> sign_bytes, magnitude_bytes;
    sign_bytes.reserve(count / 8 + 16);
    BitWriter signs(sign_bytes), magnitude(magnitude_bytes);
    TokenContext ctx(cols);
    std::size_t i = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        uint32_t row_mag = ctx.start_row(r);
        const int16_t* col_term = ctx.col_terms();
        const uint8_t* row_shift = ctx.row_shifts();
        uint32_t* mags = ctx.mags();
        for (std::size_t c = 0; c < cols; ++c, ++i) {
            const int32_t q = levels[i];
            const int64_t wide = q < 0 ? -int64_t{q} : q;
            if (wide > kMaxAbsLevel) {
                throw std::invalid_argument("level " + std::to_string(q) + " at index " + std::to_string(i) +
                                            " exceeds the codable range +-" + std::to_string(kMaxAbsLevel));
            }
            const auto mag = static_cast<uint32_t>(wide);
            const int cls = scale_class(row_mag, col_term[c]);
            int extra = 0;
            const uint32_t tok = token_of(mag, extra);
            const auto symbol = static_cast<uint16_t>(cls * kTokens + static_cast<int>(tok));
            symbol_of[i] = symbol;
            ++symbol_counts[symbol];
            // Branch-free: whether an element has magnitude bits or a sign is data, not a pattern.
            magnitude.put(mag & ((1u << extra) - 1), extra);
            signs.put(static_cast<uint32_t>(q < 0), mag != 0);
            mags[c] = tracked(mag);
            if (c + 1 >= kRowLag) row_mag = next_row_mag(row_mag, mags[c + 1 - kRowLag], row_shift[c + 1 - kRowLag]);
        }
        ctx.finish_row();
    }
    signs.finish();
    magnitude.finish();
    // Tables of the classes in use.
    std::vector<detail::RansEncSymbol> symbols(static_cast<std::size_t>(kTokenClasses) * kTokens);
    std::array<uint8_t, kBitmapBytes> bitmap{};
    std::vector<uint8_t> tables;
    BitWriter table_bits(tables);
    for (int cls = 0; cls < kTokenClasses; ++cls) {
        TokenCounts h{};
        std::copy_n(symbol_counts.begin() + cls * kTokens, kTokens, h.begin());
        uint64_t n = 0;
        for (uint64_t v : h) n += v;
        if (n == 0) continue;
        bitmap[static_cast<std::size_t>(cls >> 3)] = static_cast<uint8_t>(bitmap[cls >> 3] | 1u << (cls & 7));
        const CodedTable table = choose_table(h, n);
        table_bits.put(static_cast<uint32_t>(table.used - 1), 7);
        table_bits.put(static_cast<uint32_t>(table.shift), 3);
        table_bits.put(static_cast<uint32_t>(table.order), 4);
        uint32_t cum = 0;
        for (int t = 0; t < table.used; ++t) {
            const uint32_t f = table.freq[static_cast<std::size_t>(t)];
            if (t + 1 < table.used) put_golomb(table_bits, f >> table.shift, table.order);
            if (f) symbols[static_cast<std::size_t>(cls) * kTokens + t] = detail::rans_enc_symbol(cum, f);
            cum += f;
        }
    }
    table_bits.finish();
    // Pass 2: the tokens backwards, row by row (column c of every row uses state c mod 4).
    detail::RansWordSink sink(count);
    for (std::size_t r = rows; r-- > 0;) {
        const uint16_t* row_symbols = symbol_of.data() + r * cols;
        sink.put_run(cols, [&](std::size_t c) -> const detail::RansEncSymbol& { return symbols[row_symbols[c]]; });
    }
    std::vector<uint8_t> stream;
    sink.finish(stream);
    out.insert(out.end(), bitmap.begin(), bitmap.end());
    detail::put_uvarint(out, tables.size());
    out.insert(out.end(), tables.begin(), tables.end());
    detail::put_uvarint(out, stream.size());
    out.insert(out.end(), stream.begin(), stream.end());
    detail::put_uvarint(out, sign_bytes.size());
    out.insert(out.end(), sign_bytes.begin(), sign_bytes.end());
    out.insert(out.end(), magnitude_bytes.begin(), magnitude_bytes.end());
}

void decode_tokens(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols, int32_t* levels) {
    decode_to(data, size, rows, cols, [levels](std::size_t first, const int32_t* row, std::size_t n) {
        std::memcpy(levels + first, row, n * sizeof(int32_t));
    });
}

void decode_tokens_dequantize(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                              int64_t offset, double step, float* values) {
    decode_to(data, size, rows, cols, [values, offset, step](std::size_t first, const int32_t* row, std::size_t n) {
        float* __restrict out = values + first;
        if (offset > -(int64_t{1} << 52) && offset < (int64_t{1} << 52)) {
            // Levels and offset are exact doubles and so is their sum (below 2^53): the same values,
            // in a loop that vectorizes (int32 to double converts in SIMD, int64 does not).
            const auto shift = static_cast<double>(offset);
            for (std::size_t k = 0; k < n; ++k) out[k] = static_cast<float>((static_cast<double>(row[k]) + shift) * step);
        } else {
            for (std::size_t k = 0; k < n; ++k) out[k] = static_cast<float>(static_cast<double>(row[k] + offset) * step);
        }
    });
}

}  // namespace nnsqueeze
