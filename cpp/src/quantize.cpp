#include "nnsqueeze/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace nnsqueeze {

int64_t quantize_uniform(const float* w, std::size_t count, double step, int64_t max_abs_level, int32_t* levels) {
    const double inv = 1.0 / step;
    // Levels are int32: a larger bound could not be stored anyway.
    const double limit = static_cast<double>(std::min<int64_t>(max_abs_level, INT32_MAX)) + 0.5;
    // Blocks of a few KB: a range check, then the rounding, each a loop without an exit that the
    // compiler vectorizes; the first bad element is looked for only in a block that has one.
    constexpr std::size_t kBlock = 1024;
    for (std::size_t start = 0; start < count; start += kBlock) {
        const std::size_t n = std::min(kBlock, count - start);
        const float* x = w + start;
        uint32_t outside = 0;
        // Also catches NaN: every comparison with NaN is false.
        for (std::size_t i = 0; i < n; ++i) outside |= !(std::fabs(static_cast<double>(x[i]) * inv) < limit);
        if (outside) {
            for (std::size_t i = 0; i < n; ++i)
                if (!(std::fabs(static_cast<double>(x[i]) * inv) < limit)) return static_cast<int64_t>(start + i);
        }
        int32_t* out = levels + start;
        for (std::size_t i = 0; i < n; ++i) {
            const double v = static_cast<double>(x[i]) * inv;
            // Ties away from zero: floor(|v| + 0.5), which for a non-negative value is the truncating
            // conversion, with the sign put back.
            const auto magnitude = static_cast<int32_t>(std::fabs(v) + 0.5);
            out[i] = v < 0 ? -magnitude : magnitude;
        }
    }
    return -1;
}

void dequantize_uniform(const int32_t* levels, std::size_t count, double step, float* w) {
    for (std::size_t i = 0; i < count; ++i) w[i] = static_cast<float>(static_cast<double>(levels[i]) * step);
}

}  // namespace nnsqueeze
