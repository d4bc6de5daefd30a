#include "nnsqueeze/arith.hpp"

#include <array>
#include <cmath>

namespace nnsqueeze {
namespace {

constexpr int kCostCells = 1 << 12;

std::array<float, kCostCells + 1> make_cost_table() {
    std::array<float, kCostCells + 1> table{};
    for (int i = 0; i <= kCostCells; ++i) {
        const double p = (std::max(i, 1) + 0.5) / (kCostCells + 1.0);  // cell centre
        table[i] = static_cast<float>(-std::log2(std::min(p, 1.0)));
    }
    return table;
}

const std::array<float, kCostCells + 1> kCost = make_cost_table();

}  // namespace

float bit_cost(const ContextModel& ctx, unsigned bit) {
    const uint32_t p0 = ctx.p0();
    const uint32_t p = bit ? kProbOne - p0 : p0;
    return kCost[p >> (kProbBits - 12)];
}

}  // namespace nnsqueeze
