// Rate-distortion optimised quantization fused with level coding (DeepCABAC's quantizer).
//
// Each weight w_i picks the level q_i among {0, floor(|x|), floor(|x|) + 1} (x = w_i / step,
// with the sign of x) that minimises
//     importance_i * (x - q_i)^2 + lambda * bits(q_i)
// where bits() is estimated from the live context models at that point of the scan, i.e. the
// rate the coder will really spend.  The chosen level is coded immediately, so the estimate of
// the next weight sees the updated contexts.  lambda = 0 gives plain rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnsqueeze/level_coder.hpp"

namespace nnsqueeze {

struct RdoqStats {
    double distortion = 0;  // sum of importance * (x - q)^2, in step^2 units
};

// Throws std::invalid_argument unless step > 0, lambda >= 0 and the coder parameters are valid.
void check_rdo_arguments(double step, double lambda, const LevelCoderParams& params);

// `importance` may be null (all ones).  Inputs must be finite and |w / step| <= kMaxAbsLevel
// (checked by the caller).  Writes the chosen levels to `levels` (unless null) and the payload
// to `out`.
RdoqStats encode_rdoq(const float* w, const float* importance, std::size_t rows, std::size_t cols, double step,
                      double lambda, const LevelCoderParams& params, int32_t* levels, std::vector<uint8_t>& out);

}  // namespace nnsqueeze
