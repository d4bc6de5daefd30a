#include "nnsqueeze/trellis.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "level_contexts.hpp"

namespace nnsqueeze {

RdoqStats encode_trellis(const float* w, const float* importance, std::size_t rows, std::size_t cols, double step,
                         double lambda, const LevelCoderParams& params, int32_t* symbols, std::vector<uint8_t>& out) {
    check_rdo_arguments(step, lambda, params);
    ArithEncoder enc(out, params.rate);
    detail::LevelContexts ctx(rows == 0 ? 0 : cols, params.num_gtx);
    const int n = params.num_gtx;
    const double inv = 1.0 / step;
    constexpr double kInf = std::numeric_limits<double>::infinity();
    // Survivor decisions of one row: the symbol and the predecessor state per (column, state).
    std::vector<int32_t> choice(cols * kDqStates);
    std::vector<uint8_t> from(cols * kDqStates);
    std::vector<int32_t> row_symbols(cols);
    RdoqStats stats;
    int start_state = 0;
    // An empty tensor has nothing to scan, however many (empty) rows it claims.
    if (cols == 0) rows = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        ctx.start_row(r);
        const std::size_t base = r * cols;
        std::array<double, kDqStates> cost;
        cost.fill(kInf);
        cost[start_state] = 0;
        std::array<int32_t, kDqStates> last{};  // previous symbol on each survivor path
        for (std::size_t c = 0; c < cols; ++c) {
            const double x = static_cast<double>(w[base + c]) * inv;
            const double a = std::fabs(x);
            if (!(a <= static_cast<double>(kMaxAbsLevel))) throw std::invalid_argument("weight out of range");
            const bool negative = x < 0;
            const double imp = importance ? static_cast<double>(importance[base + c]) : 1.0;
            ctx.select(c);
            // Candidate magnitudes per quantizer: the two reconstructions around |x|, and zero.
            const auto m0 = static_cast<int64_t>(std::floor(a / 2));
            const auto m1 = static_cast<int64_t>(std::floor((a + 1) / 2));
            const std::array<std::array<int64_t, 3>, 2> cand = {{{0, m0, m0 + 1}, {0, m1, m1 + 1}}};
            std::array<std::array<double, 3>, 2> dist{}, mag_bits{};
            for (int qid = 0; qid < 2; ++qid) {
                for (int j = 0; j < 3; ++j) {
                    const int64_t m = std::min<int64_t>(cand[qid][j], kMaxAbsLevel);
                    const double recon = m == 0 ? 0.0 : static_cast<double>(qid == 0 ? 2 * m : 2 * m - 1);
                    dist[qid][j] = imp * (a - recon) * (a - recon);
                    mag_bits[qid][j] = m == 0 ? 0.0 : detail::magnitude_cost(ctx, m, n);
                }
            }
            std::array<double, kDqStates> next;
            next.fill(kInf);
            std::array<int32_t, kDqStates> next_last{};
            for (int s = 0; s < kDqStates; ++s) {
                if (cost[s] == kInf) continue;
                ctx.assume_previous(last[s]);
                ctx.set_quantizer(s >> 1);
                const double zero_bits = bit_cost(ctx.sig(), 0);
                const double nonzero_bits = bit_cost(ctx.sig(), 1) + bit_cost(ctx.sign(), negative);
                const int qid = s >> 1;
                for (int j = 0; j < 3; ++j) {
                    const int64_t m = std::min<int64_t>(cand[qid][j], kMaxAbsLevel);
                    if (j > 0 && m == 0) continue;  // zero is candidate 0 already
                    const double bits = m == 0 ? zero_bits : nonzero_bits + mag_bits[qid][j];
                    const double total = cost[s] + dist[qid][j] + lambda * bits;
                    const auto k = static_cast<int32_t>(negative ? -m : m);
                    const int t = kDqNextState[s][m & 1];
                    if (total < next[t]) {
                        next[t] = total;
                        next_last[t] = k;
                        choice[c * kDqStates + t] = k;
                        from[c * kDqStates + t] = static_cast<uint8_t>(s);
                    }
                }
            }
            cost = next;
            last = next_last;
        }
        // Backtrack the best path of the row, then code it with the adapting contexts.
        int state = 0;
        for (int s = 1; s < kDqStates; ++s) {
            if (cost[s] < cost[state]) state = s;
        }
        const int end_state = state;
        for (std::size_t c = cols; c-- > 0;) {
            row_symbols[c] = choice[c * kDqStates + state];
            state = from[c * kDqStates + state];
        }
        ctx.start_row(r);
        int s = start_state;
        for (std::size_t c = 0; c < cols; ++c) {
            const int32_t k = row_symbols[c];
            if (symbols != nullptr) symbols[base + c] = k;
            const double x = static_cast<double>(w[base + c]) * inv;
            const double recon = static_cast<double>(dq_reconstruction(k, s));
            const double imp = importance ? static_cast<double>(importance[base + c]) : 1.0;
            ctx.select(c);
            ctx.set_quantizer(s >> 1);
            stats.distortion += imp * (x - recon) * (x - recon);
            detail::encode_level(enc, ctx, k, n);
            ctx.update(c, k);
            s = kDqNextState[s][k & 1];
        }
        start_state = cols == 0 ? start_state : end_state;
    }
    enc.finish();
    return stats;
}

}  // namespace nnsqueeze
