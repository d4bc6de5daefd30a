#include "nnsqueeze/nnr_cabac.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

#include "nnsqueeze/arith.hpp"

namespace nnsqueeze::nnr {
namespace {

// The standard's tables (the values NNCodec 2.x uses).
// LPS range by [range class (bits 5..7 of the 9-bit range)][probability class (|state| >> 7)].
constexpr uint8_t kLpsRange[8][32] = {
    {128, 112, 97, 84, 74, 65, 57, 50, 45, 39, 34, 30, 27, 23, 20, 18,
     15, 14, 12, 11, 10, 9, 7, 7, 5, 5, 4, 4, 3, 3, 2, 2},
    {142, 125, 108, 93, 82, 72, 63, 56, 50, 43, 38, 33, 30, 26, 22, 20,
     17, 16, 13, 12, 11, 10, 8, 8, 6, 6, 5, 5, 3, 3, 2, 2},
    {156, 137, 119, 103, 90, 79, 70, 61, 55, 48, 42, 37, 33, 28, 24, 22,
     19, 17, 15, 13, 12, 11, 9, 9, 6, 6, 5, 5, 4, 4, 2, 2},
    {171, 150, 130, 112, 99, 87, 76, 67, 60, 52, 46, 40, 36, 31, 27, 24,
     21, 19, 16, 15, 13, 12, 10, 10, 7, 7, 6, 6, 4, 4, 3, 3},
    {185, 162, 141, 121, 107, 94, 82, 73, 65, 56, 50, 43, 39, 34, 29, 26,
     22, 21, 17, 16, 14, 13, 11, 11, 8, 8, 6, 6, 4, 4, 3, 3},
    {199, 175, 152, 131, 115, 101, 89, 78, 70, 61, 54, 47, 42, 36, 31, 28,
     24, 22, 19, 17, 15, 14, 12, 12, 8, 8, 7, 7, 5, 5, 3, 3},
    {213, 187, 163, 140, 123, 108, 95, 84, 75, 65, 58, 50, 45, 39, 33, 30,
     26, 24, 20, 18, 16, 15, 13, 13, 9, 9, 7, 7, 5, 5, 3, 3},
    {228, 200, 174, 150, 132, 116, 102, 90, 80, 70, 62, 54, 48, 42, 36, 32,
     28, 26, 22, 20, 18, 16, 14, 14, 10, 10, 8, 8, 6, 6, 4, 4},
};

// Step of an estimator state towards the coded bin, by how far the state already is on that side.
constexpr int16_t kAdaptationCurve[32] = {2512, 2288, 2064, 1840, 1616, 1392, 1168, 944, 720, 560, 464,
                                          368,  272,  208,  144,  80,   64,   64,   64,   64,   64,  64,
                                          64,   64,   64,   64,   64,   64,   64,   64,   64,   0};

// The nine estimator parameter sets a context can be given: the two shifts, the initial sum of both
// states (in the slow state's units) and the initial fast state.
struct EstimatorSet {
    int fast_shift_minus4, slow_shift, initial_sum, initial_fast;
};
constexpr EstimatorSet kEstimatorSets[9] = {
    {1, 4, 0, 0},     {1, 4, -1310, -41}, {1, 4, 3039, 95}, {0, 5, 0, 0},   {2, 6, 962, 30},
    {2, 6, 3039, 95}, {2, 6, -673, -21},  {3, 5, 0, 0},     {3, 5, 962, 30},
};

constexpr std::array<std::array<int, 2>, 8> kNextState = {
    {{0, 2}, {7, 5}, {1, 3}, {6, 4}, {2, 0}, {5, 7}, {3, 1}, {4, 6}}};

// The adaptation curve shifted right by 0..7: each estimator reads the two rows of its shifts.
struct ShiftedCurves {
    int16_t rows[8][32];
    constexpr ShiftedCurves() : rows() {
        for (int s = 0; s < 8; ++s)
            for (int i = 0; i < 32; ++i) rows[s][i] = static_cast<int16_t>(kAdaptationCurve[i] >> s);
    }
};
constexpr ShiftedCurves kShiftedCurves;

// Dual-state probability estimator.  `fast` is kept with 1/16 the resolution of the slow state; `sum`
// is slow + 16 * fast, whose sign is the more probable bin and whose magnitude picks the LPS range.
struct Estimator {
    int32_t fast = 0, sum = 0;
    const int16_t* fast_curve = kShiftedCurves.rows[5];
    const int16_t* slow_curve = kShiftedCurves.rows[4];
    int set = 0;

    void init(int chosen) {
        set = chosen;
        const EstimatorSet& s = kEstimatorSets[chosen];
        fast_curve = kShiftedCurves.rows[s.fast_shift_minus4 + 4];
        slow_curve = kShiftedCurves.rows[s.slow_shift];
        reset();
    }
    void reset() {
        sum = kEstimatorSets[set].initial_sum;
        fast = kEstimatorSets[set].initial_fast;
    }
    unsigned mps() const { return sum >= 0 ? 1u : 0u; }
    uint32_t lps_range(uint32_t range) const {
        const int32_t cls = sum >> 7;  // arithmetic shift: -1 for small negative sums
        return kLpsRange[(range >> 5) & 7][cls < 0 ? -cls : cls];
    }
    // Each state moves towards the bin by the curve at its distance on the bin's side:
    // x += dir * curve[16 + ((dir * x) >> k)] >> shift, with dir = +-1 applied as a sign mask.
    void update(unsigned bin) {
        const int32_t negate = static_cast<int32_t>(bin) - 1;  // 0 for a one, -1 for a zero
        int32_t slow = sum - 16 * fast;
        const int32_t fast_side = (fast ^ negate) - negate;
        const int32_t slow_side = (slow ^ negate) - negate;
        fast += (fast_curve[16 + (fast_side >> 3)] ^ negate) - negate;
        slow += (slow_curve[16 + (slow_side >> 7)] ^ negate) - negate;
        sum = slow + 16 * fast;
    }
};

class Decoder {
public:
    Decoder(const uint8_t* data, std::size_t size) : data_(data), size_(size) {
        value_ = (next_byte() << 8);
        value_ |= next_byte();
    }

    unsigned bin(Estimator& e) {
        const uint32_t lps = e.lps_range(range_);
        const uint32_t mps_range = range_ - lps;
        // Branch-free: the bins of weights are close to unpredictable.
        const uint32_t is_lps = 0u - static_cast<uint32_t>(value_ >= (mps_range << 7));
        value_ -= (mps_range << 7) & is_lps;
        range_ = mps_range ^ ((mps_range ^ lps) & is_lps);
        const unsigned bit = e.mps() ^ (is_lps & 1u);
        const int shift = __builtin_clz(range_) - 23;
        range_ <<= shift;
        value_ <<= shift;
        bits_needed_ += shift;
        if (bits_needed_ >= 0) {
            value_ += next_byte() << bits_needed_;
            bits_needed_ -= 8;
        }
        e.update(bit);
        return bit;
    }

    unsigned bypass() {
        value_ += value_;
        if (++bits_needed_ >= 0) {
            value_ += next_byte();
            bits_needed_ = -8;
        }
        const uint32_t scaled = range_ << 7;
        if (value_ >= scaled) {
            value_ -= scaled;
            return 1;
        }
        return 0;
    }

    // `count` bypass bins, up to 8 at a time: shift the value register by the bins, then compare it
    // against the range scaled to each bin's position.
    uint32_t bypass_bits(int count) {
        uint32_t bins = 0;
        while (count > 0) {
            const int take = count < 8 ? count : 8;
            value_ <<= take;
            bits_needed_ += take;
            if (bits_needed_ >= 0) {
                value_ += next_byte() << bits_needed_;
                bits_needed_ -= 8;
            }
            uint32_t scaled = range_ << (7 + take);
            for (int i = 0; i < take; ++i) {
                scaled >>= 1;
                const uint32_t one = value_ >= scaled;
                bins = (bins << 1) | one;
                value_ -= scaled & (0u - one);
            }
            count -= take;
        }
        return bins;
    }

    bool terminate() {
        range_ -= 2;
        if (value_ >= (range_ << 7)) return true;
        if (range_ < 256) {
            range_ += range_;
            value_ += value_;
            if (++bits_needed_ == 0) {
                value_ += next_byte();
                bits_needed_ = -8;
            }
        }
        return false;
    }

    // Block rows start with a full range so that each can be decoded from its entry point alone.
    void restart_range() { range_ = 256; }
    uint64_t bit_offset() const { return 8 * static_cast<uint64_t>(pos_) - 8 + static_cast<int64_t>(bits_needed_); }
    uint32_t value_high() const { return value_ >> 7; }
    std::size_t bytes_read() const { return pos_; }
    std::size_t size() const { return size_; }
    bool overrun() const { return pos_ > size_; }
    // The byte holding the stop bit: the terminating bin is followed by a 1 bit and zero bits to the byte end.
    bool stop_pattern_ok() const {
        if (pos_ == 0 || pos_ > size_) return false;
        return ((static_cast<uint32_t>(data_[pos_ - 1]) << (8 + bits_needed_)) & 0xFFu) == 0x80u;
    }

private:
    uint32_t next_byte() {
        const uint32_t b = pos_ < size_ ? data_[pos_] : 0u;
        ++pos_;
        return b;
    }

    const uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    uint32_t range_ = 510;
    uint32_t value_ = 0;
    int bits_needed_ = -8;
};

// Context indices of the payload, for `n` "greater than x" flags.
struct ContextLayout {
    int n;
    static constexpr int kSig = 0;         // 3 per quantizer state (24)
    static constexpr int kTemporalSig = 24;  // with temporal context adaptation: 2 per state (16)
    static constexpr int kSign = 48;       // by the neighbour's sign class (3)
    static constexpr int kGreater = 53;    // 2 per flag: current level positive / negative
    int remainder() const { return kGreater + 4 * n; }  // Exp-Golomb prefix bins (32)
    int choice() const { return remainder() + 32 + 2; }  // "this context has non-default parameters"
    int row_skip() const { return remainder() + 32 + 4; }
    int count() const { return remainder() + 32 + 5; }
};

int neighbour_class(int32_t previous) { return previous == 0 ? 0 : (previous < 0 ? 1 : 2); }

class TensorDecoder {
public:
    TensorDecoder(const uint8_t* data, std::size_t size, const TensorSyntax& s)
        : s_(s), dec_(data, size), layout_{static_cast<int>(s.unary_length)}, ctx_(layout_.count()) {
        for (auto& e : ctx_) e.init(0);
        // Past a bounded tensor the maximum level is implied by the codebook.
        max_abs_ = s.codebook_size > 0 ? std::max<int64_t>(s.codebook_zero_offset,
                                                         int64_t{s.codebook_size} - 1 - s.codebook_zero_offset)
                                       : -1;
    }

    TensorResult run(int32_t* levels) {
        TensorResult result;
        if (s_.qp_offset_bits > 0) {
            const uint32_t raw = dec_.bypass_bits(s_.qp_offset_bits);
            const int unused = 32 - s_.qp_offset_bits;
            result.qp_offset = static_cast<int32_t>(raw << unused) >> unused;
        }
        const std::size_t count = s_.rows * s_.cols;
        std::vector<uint8_t> skipped;
        const bool row_syntax = s_.profile == 1 && s_.cols > 1 && count > s_.cols && s_.codebook_size != 1;
        if (row_syntax) {
            if (s_.parent_node_id_present && dec_.bypass())
                throw std::invalid_argument("history-dependent significance probability (HDSP) is not supported");
            if (dec_.bypass()) {
                result.row_skipping = true;
                skipped.resize(s_.rows);
                for (std::size_t r = 0; r < s_.rows; ++r) {
                    skipped[r] = static_cast<uint8_t>(dec_.bin(ctx_[layout_.row_skip()]));
                    result.skipped_rows += skipped[r];
                }
            }
        }
        read_estimator_choices();
        result.tuned_contexts = tuned_;
        scan(levels, skipped);
        if (!dec_.terminate()) throw BitstreamError("NNR payload: terminating bin not found after the levels");
        if (dec_.overrun()) throw BitstreamError("NNR payload ends early (truncated)");
        if (!dec_.stop_pattern_ok()) throw BitstreamError("NNR payload: no stop bit after the terminating bin");
        result.bytes_read = dec_.bytes_read();
        if (result.bytes_read != dec_.size())
            throw BitstreamError("NNR payload has " + std::to_string(dec_.size() - result.bytes_read) +
                                 " bytes after its terminating bin (nnr_unit_size does not match the coded data)");
        return result;
    }

private:
    // One flag per context (and 3 bypass bits for a non-default set): the estimator parameters the
    // encoder chose for it.  Contexts whose bins cannot occur are not signalled.
    void choose(int index, bool signalled) {
        int chosen = 0;
        if (signalled && dec_.bin(ctx_[layout_.choice()])) {
            chosen = 1 + static_cast<int>(dec_.bypass_bits(3));
            ++tuned_;
        }
        ctx_[index].init(chosen);
    }

    void read_estimator_choices() {
        const bool temporal = s_.previous_update != nullptr;
        const int sig_contexts = s_.dependent ? 24 : 3;
        for (int i = 0; i < sig_contexts; ++i) choose(ContextLayout::kSig + i, s_.codebook_size != 1);
        if (temporal) {  // two per quantizer state: the previous update's level is +-1, or larger
            for (int i = 0; i < (s_.dependent ? 16 : 2); ++i) choose(ContextLayout::kTemporalSig + i, s_.codebook_size != 1);
        }
        const bool sign_inferred = s_.codebook_size > 0 && (s_.codebook_zero_offset == 0 ||
                                                            s_.codebook_zero_offset == s_.codebook_size - 1);
        for (int i = 0; i < (temporal ? 5 : 3); ++i)
            choose(ContextLayout::kSign + i, !sign_inferred && s_.codebook_size != 1);
        for (int a = 0; a < 2 * layout_.n; ++a) choose(ContextLayout::kGreater + a, max_abs_ == -1 || a < 2 * max_abs_);
        if (temporal) {
            for (int a = 2 * layout_.n; a < 4 * layout_.n; ++a)
                choose(ContextLayout::kGreater + a, max_abs_ == -1 || a < 2 * (max_abs_ - 1) + 2 * layout_.n);
        }
        int64_t level = layout_.n - 1;
        for (int a = 0; a < 31; ++a) {
            level += int64_t{1} << a;
            choose(layout_.remainder() + a, max_abs_ == -1 || level < max_abs_);
        }
    }

    void start_block_row() {
        for (auto& e : ctx_) e.reset();
        previous_ = 0;
        dec_.restart_range();
    }

    void check_entry_point(std::size_t block_row, uint64_t& row_start) {
        const std::size_t j = block_row - 1;
        const uint64_t offset = dec_.bit_offset();
        if (offset - row_start != s_.entry_point_offsets[j] || dec_.value_high() != s_.entry_point_values[j] ||
            (s_.dependent && static_cast<uint32_t>(state_) != s_.entry_point_states[j])) {
            throw BitstreamError("NNR payload: entry point of block row " + std::to_string(block_row) +
                                 " does not match the coded data");
        }
        row_start = offset;
    }

    void scan(int32_t* levels, const std::vector<uint8_t>& skipped) {
        const std::size_t rows = s_.rows, cols = s_.cols;
        if (rows == 0 || cols == 0) return;
        const bool blocks = s_.scan_order != 0 && cols > 1 && rows > 1;
        const std::size_t side = blocks ? (std::size_t{4} << s_.scan_order) : 0;
        const std::size_t block_h = blocks ? side : rows, block_w = blocks ? side : cols;
        const std::size_t n_block_rows = (rows + block_h - 1) / block_h;
        if (blocks && s_.entry_point_offsets.size() + 1 != n_block_rows)
            throw BitstreamError("NNR payload: wrong number of entry points");
        // A skipped row moves the quantizer state as `cols` zero levels would (per block it spans).
        int after_skip[8];
        for (int st = 0; st < 8; ++st) {
            int t = st;
            if (s_.dependent)
                for (std::size_t a = 0; a < cols; ++a) t = kNextState[t][0];
            after_skip[st] = t;
        }
        uint64_t row_start = 0;
        if (blocks && n_block_rows > 1) {
            dec_.restart_range();
            row_start = dec_.bit_offset();
        }
        for (std::size_t br = 0; br < n_block_rows; ++br) {
            if (br > 0) {
                start_block_row();
                check_entry_point(br, row_start);
            }
            const std::size_t y0 = br * block_h, y1 = std::min(rows, y0 + block_h);
            for (std::size_t x0 = 0; x0 < cols; x0 += block_w) {
                const std::size_t x1 = std::min(cols, x0 + block_w);
                for (std::size_t y = y0; y < y1; ++y) {
                    if (!skipped.empty() && skipped[y]) {
                        state_ = after_skip[state_];
                        continue;
                    }
                    int32_t* row = levels + y * cols;
                    for (std::size_t x = x0; x < x1; ++x)
                        row[x] = level(s_.previous_update ? s_.previous_update[y * cols + x] : 0);
                }
            }
            if (dec_.overrun()) throw BitstreamError("NNR payload ends early (truncated)");
        }
    }

    // One level at the current position: the coded value, then its reconstruction index.
    int32_t level(int32_t base) {
        const int32_t k = coded_value(base);
        previous_ = k;
        if (!s_.dependent) return k;
        int32_t q = k;
        if (k != 0) {
            // 2k + 1 must fit int32 (NNCodec clips its QP so that its levels do).
            if (k > (int32_t{1} << 30) - 1 || k < -((int32_t{1} << 30) - 1))
                throw BitstreamError("NNR payload: level out of range");
            q = 2 * k + (k < 0 ? (state_ & 1) : -(state_ & 1));
        }
        state_ = kNextState[state_][k & 1];
        return q;
    }

    // `base`: the previous update's level here (0 without temporal context adaptation).  Where it is
    // not zero it selects the contexts instead of the neighbour.
    int32_t coded_value(int32_t base) {
        if (s_.profile == 1 && s_.codebook_size == 1) return 0;
        const int nb = neighbour_class(previous_);
        const int64_t base_abs = base < 0 ? -int64_t{base} : base;
        const int sig = base_abs > 0 ? ContextLayout::kTemporalSig + 2 * state_ + (base_abs > 1 ? 1 : 0)
                                     : ContextLayout::kSig + 3 * state_ + nb;
        if (!dec_.bin(ctx_[sig])) return 0;
        bool negative;
        if (s_.profile == 1 && s_.codebook_size > 0 &&
            (s_.codebook_zero_offset == 0 || s_.codebook_zero_offset == s_.codebook_size - 1)) {
            negative = s_.codebook_zero_offset != 0;
        } else {
            const int sign = base_abs > 0 ? ContextLayout::kSign + 3 + (base < 0 ? 0 : 1) : ContextLayout::kSign + nb;
            negative = dec_.bin(ctx_[sign]) != 0;
        }
        int64_t magnitude = 1;
        const int64_t max_abs = (s_.profile == 1 && s_.codebook_size > 0)
                                    ? (negative ? int64_t{s_.codebook_zero_offset}
                                                : int64_t{s_.codebook_size} - s_.codebook_zero_offset - 1)
                                    : -1;
        const bool bounded = max_abs != -1;
        if (!bounded || max_abs > 1) {
            unsigned greater = 0;
            int j = -1;
            do {
                ++j;
                const int flag = base_abs > 0 ? ContextLayout::kGreater + 2 * layout_.n + 2 * j + (base_abs >= j ? 0 : 1)
                                              : ContextLayout::kGreater + 2 * j + (negative ? 1 : 0);
                greater = dec_.bin(ctx_[flag]);
                magnitude += greater;
            } while (greater && j < layout_.n - 1 && (!bounded || max_abs > magnitude));
            if (greater && (!bounded || max_abs > magnitude)) {
                int remainder_bits = 0;
                j = -1;
                do {
                    ++j;
                    greater = dec_.bin(ctx_[layout_.remainder() + j]);
                    if (greater && (!bounded || max_abs > magnitude)) {
                        magnitude += int64_t{1} << remainder_bits;
                        ++remainder_bits;
                    }
                } while (greater && j < 30 && (!bounded || max_abs >= magnitude + (int64_t{1} << remainder_bits)));
                magnitude += dec_.bypass_bits(remainder_bits);
            }
        }
        if (magnitude > INT32_MAX) throw BitstreamError("NNR payload: level out of range");
        return static_cast<int32_t>(negative ? -magnitude : magnitude);
    }

    const TensorSyntax& s_;
    Decoder dec_;
    ContextLayout layout_;
    std::vector<Estimator> ctx_;
    int64_t max_abs_;
    int32_t previous_ = 0;
    int state_ = 0;
    int tuned_ = 0;
};

}  // namespace

std::size_t block_rows(std::size_t rows, std::size_t cols, int scan_order) {
    if (scan_order == 0 || cols <= 1 || rows <= 1) return 0;
    const std::size_t side = std::size_t{4} << scan_order;
    return (rows + side - 1) / side;
}

TensorResult decode_tensor(const uint8_t* data, std::size_t size, const TensorSyntax& syntax, int32_t* levels) {
    if (syntax.scan_order < 0 || syntax.scan_order > 4)
        throw std::invalid_argument("scan_order " + std::to_string(syntax.scan_order) + " is not defined (0..4)");
    if (syntax.unary_length < 1 || syntax.unary_length > 256)
        throw std::invalid_argument("cabac_unary_length must be in 1..256");
    if (syntax.qp_offset_bits < 0 || syntax.qp_offset_bits > 13)
        throw std::invalid_argument("QP offset bits must be in 0..13");
    if (syntax.profile != 0 && syntax.profile != 1)
        throw std::invalid_argument("general_profile_idc " + std::to_string(syntax.profile) + " is not supported");
    if (syntax.codebook_size > 0 && syntax.codebook_zero_offset >= syntax.codebook_size)
        throw std::invalid_argument("codebook zero offset outside the codebook");
    std::fill(levels, levels + syntax.rows * syntax.cols, 0);
    TensorDecoder decoder(data, size, syntax);
    return decoder.run(levels);
}

}  // namespace nnsqueeze::nnr

namespace nnsqueeze::nnr {
namespace {

// The binary arithmetic encoder that the decoder above inverts: a 9-bit range and a low register
// with 8 extra bits of headroom; bytes leave the register once 8 bits are complete, and a run of 0xFF
// bytes waits until a carry out of the register is settled.
class Encoder {
public:
    explicit Encoder(std::vector<uint8_t>& out) : out_(out) {}

    void bin(unsigned bit, Estimator& e) {
        const uint32_t lps = e.lps_range(range_);
        range_ -= lps;
        if (bit == e.mps()) {
            if (range_ < 256) {
                range_ <<= 1;
                low_ <<= 1;
                --bits_left_;
            }
        } else {
            const int shift = __builtin_clz(lps) - 23;
            low_ += range_;
            range_ = lps << shift;
            low_ <<= shift;
            bits_left_ -= shift;
        }
        if (bits_left_ < 12) write_out();
        e.update(bit);
    }

    void bypass(unsigned bit) {
        low_ <<= 1;
        if (bit) low_ += range_;
        if (--bits_left_ < 12) write_out();
    }

    void bypass_bits(uint32_t value, int count) {
        for (int i = count - 1; i >= 0; --i) bypass((value >> i) & 1u);
    }

    // The terminating bin (a one), then the flush: the decoder reads exactly the bytes written.
    void finish() {
        range_ -= 2;
        low_ += range_;
        low_ <<= 7;
        range_ = 2 << 7;
        bits_left_ -= 7;
        if (bits_left_ < 12) write_out();
        if (low_ >> (32 - bits_left_)) {  // a carry into the bytes still held back
            out_.push_back(static_cast<uint8_t>(held_ + 1));
            for (; pending_ > 1; --pending_) out_.push_back(0x00);
            low_ -= 1u << (32 - bits_left_);
        } else {
            if (pending_ > 0) out_.push_back(held_);
            for (; pending_ > 1; --pending_) out_.push_back(0xFF);
        }
        // The stop bit after the last coded bit, then the register's remaining whole bytes.
        low_ >>= 8;
        low_ = (low_ << 1) | 1u;
        --bits_left_;
        low_ <<= 32 - (24 - bits_left_);
        for (int i = 0; i < 24 - bits_left_; i += 8) out_.push_back(static_cast<uint8_t>((low_ >> (24 - i)) & 0xFFu));
    }

private:
    void write_out() {
        const uint32_t lead = low_ >> (24 - bits_left_);
        bits_left_ += 8;
        low_ &= 0xFFFFFFFFu >> bits_left_;
        if (lead == 0xFF) {
            ++pending_;
        } else if (pending_ > 0) {
            const uint32_t carry = lead >> 8;
            out_.push_back(static_cast<uint8_t>(held_ + carry));
            held_ = static_cast<uint8_t>(lead & 0xFFu);
            for (; pending_ > 1; --pending_) out_.push_back(static_cast<uint8_t>((0xFF + carry) & 0xFFu));
        } else {
            pending_ = 1;
            held_ = static_cast<uint8_t>(lead);
        }
    }

    std::vector<uint8_t>& out_;
    uint32_t low_ = 0;
    uint32_t range_ = 510;
    int bits_left_ = 23;
    uint8_t held_ = 0xFF;
    uint32_t pending_ = 0;
};

// Cost in bits of a bin with an estimator, from the LPS probability averaged over the range classes.
struct BinCosts {
    double lps[32], mps[32];
    BinCosts() {
        for (int c = 0; c < 32; ++c) {
            double p = 0;
            for (int r = 0; r < 8; ++r) p += kLpsRange[r][c] / (256.0 + 32.0 * r + 16.0) / 8.0;
            lps[c] = -std::log2(p);
            mps[c] = -std::log2(1.0 - p);
        }
    }
    double cost(const Estimator& e, unsigned bit) const {
        const int32_t cls = e.sum >> 7;
        const int i = cls < 0 ? -cls : cls;
        return bit == e.mps() ? mps[i] : lps[i];
    }
};
const BinCosts& bin_costs() {
    static const BinCosts costs;
    return costs;
}

// Which of the nine parameter sets codes a context's bins in the fewest bits: every set is run over
// the bins; a non-default set pays for its flag and 3 bits.
struct EstimatorTrial {
    Estimator sets[9];
    double bits[9] = {};
    EstimatorTrial() {
        for (int i = 0; i < 9; ++i) sets[i].init(i);
    }
    void add(unsigned bit) {
        for (int i = 0; i < 9; ++i) {
            bits[i] += bin_costs().cost(sets[i], bit);
            sets[i].update(bit);
        }
    }
    int best() const {
        int chosen = 0;
        for (int i = 1; i < 9; ++i)
            if (bits[i] + 4.0 < bits[chosen] + (chosen ? 4.0 : 0.0)) chosen = i;
        return chosen;
    }
};

// Context-coded bins go to `Sink::bin(context index, bit)`, bypass bins to `Sink::bypass(value, count)`.
template <class Sink>
void code_level(Sink& sink, int32_t k, int state, int32_t previous, const ContextLayout& layout) {
    const int nb = neighbour_class(previous);
    sink.bin(ContextLayout::kSig + 3 * state + nb, k != 0);
    if (k == 0) return;
    const bool negative = k < 0;
    sink.bin(ContextLayout::kSign + nb, negative);
    const int64_t magnitude = negative ? -int64_t{k} : k;
    for (int j = 0; j < layout.n; ++j) {
        const bool greater = magnitude > j + 1;
        sink.bin(ContextLayout::kGreater + 2 * j + (negative ? 1 : 0), greater);
        if (!greater) return;
    }
    // Exp-Golomb remainder: `bits` ones (one context per position), a zero, then `bits` bypass bins.
    const uint64_t rem = static_cast<uint64_t>(magnitude - layout.n - 1);
    int bits = 0;
    while (rem + 1 >= (uint64_t{2} << bits)) ++bits;
    for (int j = 0; j < bits; ++j) sink.bin(layout.remainder() + j, 1);
    sink.bin(layout.remainder() + bits, 0);
    sink.bypass(static_cast<uint32_t>(rem - ((uint64_t{1} << bits) - 1)), bits);
}

// Runs `code_level` over the tensor in scan order, with the dependent quantizer's state; returns
// the symbols (levels for uniform quantization).
template <class Sink>
void scan_levels(Sink& sink, const int32_t* levels, const TensorSyntax& s, const std::vector<uint8_t>& skipped,
                 const ContextLayout& layout) {
    int state = 0;
    int32_t previous = 0;
    for (std::size_t y = 0; y < s.rows; ++y) {
        if (!skipped.empty() && skipped[y]) {
            if (s.dependent)
                for (std::size_t a = 0; a < s.cols; ++a) state = kNextState[state][0];
            continue;
        }
        const int32_t* row = levels + y * s.cols;
        for (std::size_t x = 0; x < s.cols; ++x) {
            int32_t k = row[x];
            if (s.dependent && k != 0) {
                const int odd = state & 1;
                if ((k & 1) != odd) throw std::invalid_argument("dependent levels do not follow the quantizer states");
                k = (k + (k < 0 ? -odd : odd)) / 2;
            }
            code_level(sink, k, state, previous, layout);
            previous = k;
            if (s.dependent) state = kNextState[state][k & 1];
        }
    }
}

struct TrialSink {
    std::vector<EstimatorTrial>& trials;
    void bin(int index, bool bit) { trials[index].add(bit ? 1u : 0u); }
    static void bypass(uint32_t, int) {}
};

struct EncodeSink {
    Encoder& enc;
    std::vector<Estimator>& ctx;
    void bin(int index, bool bit) { enc.bin(bit ? 1u : 0u, ctx[index]); }
    void bypass(uint32_t value, int count) { enc.bypass_bits(value, count); }
};

}  // namespace

std::vector<uint8_t> encode_tensor(const int32_t* levels, const TensorSyntax& s, int32_t qp_offset,
                                   bool choose_estimators) {
    if (s.profile != 1 || s.codebook_size != 0 || s.scan_order != 0)
        throw std::invalid_argument("the NNR encoder writes profile 1, no codebook, scan_order 0");
    if (s.unary_length < 1 || s.unary_length > 256) throw std::invalid_argument("cabac_unary_length must be in 1..256");
    const std::size_t count = s.rows * s.cols;
    for (std::size_t i = 0; i < count; ++i) {
        const int64_t v = levels[i];
        if (v > (int64_t{1} << 29) - 1 || v < -((int64_t{1} << 29) - 1))
            throw std::invalid_argument("level " + std::to_string(v) + " outside +-(2^29 - 1)");
    }
    if (s.qp_offset_bits > 0) {
        const int32_t half = int32_t{1} << (s.qp_offset_bits - 1);
        if (qp_offset < -half || qp_offset >= half)
            throw std::invalid_argument("QP offset " + std::to_string(qp_offset) + " does not fit " +
                                        std::to_string(s.qp_offset_bits) + " bits");
    }
    const ContextLayout layout{static_cast<int>(s.unary_length)};
    std::vector<uint8_t> skipped;
    const bool row_syntax = s.cols > 1 && count > s.cols;
    if (row_syntax) {
        skipped.assign(s.rows, 0);
        bool any = false;
        for (std::size_t y = 0; y < s.rows; ++y) {
            const int32_t* row = levels + y * s.cols;
            skipped[y] = std::all_of(row, row + s.cols, [](int32_t v) { return v == 0; });
            any = any || skipped[y];
        }
        if (!any) skipped.clear();
    }
    std::vector<int> chosen(layout.count(), 0);
    if (choose_estimators) {
        std::vector<EstimatorTrial> trials(layout.count());
        TrialSink trial{trials};
        scan_levels(trial, levels, s, skipped, layout);
        for (int i = 0; i < layout.count(); ++i) chosen[i] = trials[i].best();
    }
    std::vector<uint8_t> out;
    out.reserve(count / 2 + 64);
    Encoder enc(out);
    std::vector<Estimator> ctx(layout.count());
    for (auto& e : ctx) e.init(0);
    if (s.qp_offset_bits > 0)
        enc.bypass_bits(static_cast<uint32_t>(qp_offset) & ((1u << s.qp_offset_bits) - 1), s.qp_offset_bits);
    if (row_syntax) {
        if (s.parent_node_id_present) enc.bypass(0);  // no history-dependent significance
        enc.bypass(skipped.empty() ? 0 : 1);
        for (std::size_t y = 0; y < skipped.size(); ++y) enc.bin(skipped[y], ctx[layout.row_skip()]);
    }
    // The choices, in the order the decoder reads them: significance, sign, greater-than, remainder.
    auto signal = [&](int index) {
        const int c = chosen[index];
        enc.bin(c != 0, ctx[layout.choice()]);
        if (c != 0) enc.bypass_bits(static_cast<uint32_t>(c - 1), 3);
        ctx[index].init(c);
    };
    for (int i = 0; i < (s.dependent ? 24 : 3); ++i) signal(ContextLayout::kSig + i);
    for (int i = 0; i < 3; ++i) signal(ContextLayout::kSign + i);
    for (int a = 0; a < 2 * layout.n; ++a) signal(ContextLayout::kGreater + a);
    for (int a = 0; a < 31; ++a) signal(layout.remainder() + a);
    EncodeSink sink{enc, ctx};
    scan_levels(sink, levels, s, skipped, layout);
    enc.finish();
    return out;
}

}  // namespace nnsqueeze::nnr

namespace nnsqueeze::nnr {
namespace {

double rate_proxy(int64_t k) {
    if (k == 0) return 1.0;
    return 2.0 + 2.0 * std::log2(static_cast<double>(k < 0 ? -k : k) + 1.0);
}

// The candidate reconstruction indices of quantizer `odd` for x = w / step: the two of its parity
// around x, and zero (which both quantizers reconstruct).
void candidates(double x, int odd, int64_t out[3]) {
    const int64_t below = odd ? 2 * static_cast<int64_t>(std::floor((x - 1.0) / 2.0)) + 1
                              : 2 * static_cast<int64_t>(std::floor(x / 2.0));
    out[0] = below;
    out[1] = below + 2;
    out[2] = 0;
}

// Symbol of reconstruction index q in a state whose quantizer is `odd`.
int64_t symbol_of(int64_t q, int odd) { return q == 0 ? 0 : (q + (q < 0 ? -odd : odd)) / 2; }

}  // namespace

void dependent_quantize(const float* weights, std::size_t rows, std::size_t cols, double step, double lambda,
                        int32_t* levels) {
    if (!(step > 0.0) || !std::isfinite(step)) throw std::invalid_argument("step must be positive and finite");
    constexpr double kInf = 1e300;
    constexpr int64_t kMax = (int64_t{1} << 29) - 1;
    std::vector<uint8_t> choice(cols * 8);  // per position and state: previous state (3 bits), candidate (2 bits)
    double cost[8], next[8];
    int start = 0;
    for (std::size_t y = 0; y < rows; ++y) {
        for (int s = 0; s < 8; ++s) cost[s] = s == start ? 0.0 : kInf;
        const float* row = weights + y * cols;
        for (std::size_t x = 0; x < cols; ++x) {
            if (!std::isfinite(row[x])) throw std::invalid_argument("weights must be finite");
            const double v = row[x] / step;
            if (std::fabs(v) > static_cast<double>(kMax - 4)) throw std::invalid_argument("weight / step beyond the level range");
            for (int s = 0; s < 8; ++s) next[s] = kInf;
            uint8_t* decided = choice.data() + x * 8;
            for (int s = 0; s < 8; ++s) {
                if (cost[s] >= kInf) continue;
                int64_t cand[3];
                candidates(v, s & 1, cand);
                for (int c = 0; c < 3; ++c) {
                    const double d = v - static_cast<double>(cand[c]);
                    const int64_t k = symbol_of(cand[c], s & 1);
                    const double total = cost[s] + d * d + lambda * rate_proxy(k);
                    const int t = kNextState[s][k & 1];
                    if (total < next[t]) {
                        next[t] = total;
                        decided[t] = static_cast<uint8_t>(s | (c << 3));
                    }
                }
            }
            std::copy(next, next + 8, cost);
        }
        int best = 0;
        for (int s = 1; s < 8; ++s)
            if (cost[s] < cost[best]) best = s;
        // Trace the row back from its best end state.
        int s = best;
        int32_t* out = levels + y * cols;
        for (std::size_t x = cols; x-- > 0;) {
            const int prev = choice[x * 8 + s] & 7;
            const int c = choice[x * 8 + s] >> 3;
            int64_t cand[3];
            candidates(row[x] / step, prev & 1, cand);
            out[x] = static_cast<int32_t>(cand[c]);
            s = prev;
        }
        start = cols == 0 ? start : best;
    }
}

}  // namespace nnsqueeze::nnr
