#include "nnsqueeze/rdoq.hpp"

#include <cmath>
#include <stdexcept>

#include "level_contexts.hpp"

namespace nnsqueeze {

void check_rdo_arguments(double step, double lambda, const LevelCoderParams& params) {
    check_adaptation(params.rate);
    if (params.num_gtx < 0 || params.num_gtx > kMaxGtx) throw std::invalid_argument("num_gtx out of range");
    if (!(step > 0) || !(lambda >= 0)) throw std::invalid_argument("step must be > 0 and lambda >= 0");
}

RdoqStats encode_rdoq(const float* w, const float* importance, std::size_t rows, std::size_t cols, double step,
                      double lambda, const LevelCoderParams& params, int32_t* levels, std::vector<uint8_t>& out) {
    check_rdo_arguments(step, lambda, params);
    ArithEncoder enc(out, params.rate);
    detail::LevelContexts ctx(rows == 0 ? 0 : cols, params.num_gtx);
    const int n = params.num_gtx;
    const double inv = 1.0 / step;
    RdoqStats stats;
    // An empty tensor has nothing to scan, however many (empty) rows it claims.
    if (cols == 0) rows = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        ctx.start_row(r);
        for (std::size_t c = 0; c < cols; ++c) {
            const std::size_t i = r * cols + c;
            const double x = static_cast<double>(w[i]) * inv;
            const double a = std::fabs(x);
            if (!(a <= static_cast<double>(kMaxAbsLevel))) throw std::invalid_argument("weight out of range");
            const bool negative = x < 0;
            const double imp = importance ? static_cast<double>(importance[i]) : 1.0;
            ctx.select(c);
            int64_t best;
            double best_cost;
            if (lambda == 0) {
                best = static_cast<int64_t>(std::floor(a + 0.5));  // exactly quantize_uniform's rounding
                best_cost = imp * (a - best) * (a - best);
            } else {
                const auto lo = static_cast<int64_t>(std::floor(a));
                best = 0;
                best_cost = imp * a * a + lambda * detail::level_cost(ctx, 0, negative, n);
                for (int64_t m = std::max<int64_t>(lo, 1); m <= std::min<int64_t>(lo + 1, kMaxAbsLevel); ++m) {
                    const double cost = imp * (a - m) * (a - m) + lambda * detail::level_cost(ctx, m, negative, n);
                    if (cost < best_cost) {
                        best_cost = cost;
                        best = m;
                    }
                }
            }
            const auto q = static_cast<int32_t>(negative ? -best : best);
            stats.distortion += imp * (a - best) * (a - best);
            detail::encode_level(enc, ctx, q, n);
            ctx.update(c, q);
            if (levels != nullptr) levels[i] = q;
        }
    }
    enc.finish();
    return stats;
}

}  // namespace nnsqueeze
