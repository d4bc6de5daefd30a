// Dependent (trellis-coded) quantization with a rate term, fused with level coding.
//
// Two scalar quantizers share the step: Q0 reconstructs even multiples of the step (2k), Q1 odd
// multiples and zero (2k - sgn k).  A 4-state machine driven by the parity of each coded level k
// picks the quantizer of the next weight (state s uses Q[s >> 1]; next = kNextState[s][k & 1]),
// so the decoder follows the encoder's choices without side information.  The encoder runs a
// Viterbi search per row over the states, minimising
//     sum importance_i * (x_i - recon_i)^2 + lambda * bits(k_i)
// with bits estimated from the context models as they stand at the start of the row (the row's
// magnitude is taken from the row start; the previous level of each survivor path is exact).
// The chosen row is then coded with the adapting contexts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnsqueeze/level_coder.hpp"
#include "nnsqueeze/rdoq.hpp"

namespace nnsqueeze {

inline constexpr int kDqStates = 4;
inline constexpr uint8_t kDqNextState[kDqStates][2] = {{0, 2}, {2, 0}, {1, 3}, {3, 1}};

// Reconstruction index (in steps) of symbol k in state s.
inline int64_t dq_reconstruction(int32_t k, int state) {
    const int64_t twice = 2 * int64_t{k};
    if ((state >> 1) == 0 || k == 0) return twice;
    return k > 0 ? twice - 1 : twice + 1;
}

// Writes the coded symbols k to `symbols` (unless null), the payload to `out`.  Same preconditions as
// encode_rdoq.  Decode with decode_dependent.
RdoqStats encode_trellis(const float* w, const float* importance, std::size_t rows, std::size_t cols, double step,
                         double lambda, const LevelCoderParams& params, int32_t* symbols, std::vector<uint8_t>& out);

// Decodes symbols and reconstructs values = float(recon(k, state) * step).
void decode_dependent(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                      const LevelCoderParams& params, double step, float* values);

}  // namespace nnsqueeze
