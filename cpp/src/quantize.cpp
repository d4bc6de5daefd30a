#include "nnsqueeze/quantize.hpp"

#include <cmath>

namespace nnsqueeze {

int64_t quantize_uniform(const float* w, std::size_t count, double step, int64_t max_abs_level, int32_t* levels) {
    const double inv = 1.0 / step;
    const double limit = static_cast<double>(max_abs_level) + 0.5;
    for (std::size_t i = 0; i < count; ++i) {
        const double x = static_cast<double>(w[i]) * inv;
        // Also rejects NaN: every comparison with NaN is false.
        if (!(std::fabs(x) < limit)) return static_cast<int64_t>(i);
        levels[i] = static_cast<int32_t>(x < 0 ? -std::floor(-x + 0.5) : std::floor(x + 0.5));
    }
    return -1;
}

void dequantize_uniform(const int32_t* levels, std::size_t count, double step, float* w) {
    for (std::size_t i = 0; i < count; ++i) w[i] = static_cast<float>(static_cast<double>(levels[i]) * step);
}

}  // namespace nnsqueeze
