// DeepCABAC-style coding of integer quantization levels.
//
// Binarization of one level q (scan order is row-major over a rows x cols view):
//   sig      q != 0                                   context coded
//   sign     q < 0                                    context coded
//   gtx_k    |q| > k for k = 1..num_gtx (unary)        context coded
//   rem      |q| - num_gtx - 1, Exp-Golomb order 0:    prefix context coded, suffix bypass
//
// Context selection uses already coded neighbours: the previous level in the row, a
// running magnitude of the row, a running magnitude of the column over earlier rows and
// the tensor's running mean.  Row and column scales combine multiplicatively (in the log
// domain, integer arithmetic only, so encoder and decoder agree on every platform).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnsqueeze/arith.hpp"

namespace nnsqueeze {

struct LevelCoderParams {
    int num_gtx = 10;  // unary "abs > k" flags before the Exp-Golomb remainder, 0..32
    Adaptation rate;   // context model adaptation, signalled per tensor
};

inline constexpr int kMaxGtx = 32;
// Largest |level| the binarization carries (Exp-Golomb prefix stays below 31 bins).
inline constexpr int64_t kMaxAbsLevel = (int64_t{1} << 30) - 1;

// Upper bound on elements a payload of `payload_bytes` can carry: every element codes
// at least one context-coded bin, whose cost is bounded below by the probability clamp.
uint64_t max_elements_for_payload(std::size_t payload_bytes);

// Encodes `count` levels viewed as rows x cols (rows * cols == count) into `out`.
// Throws std::invalid_argument for levels outside +-kMaxAbsLevel.
void encode_levels(const int32_t* levels, std::size_t rows, std::size_t cols,
                   const LevelCoderParams& params, std::vector<uint8_t>& out);

// Decodes rows * cols levels into `levels`.  Throws BitstreamError if the payload is
// truncated, too long or malformed.
void decode_levels(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                   const LevelCoderParams& params, int32_t* levels);

// Hinted variant (not used by the .nnsq format): the significance and sign contexts are also
// selected by hints[i] in 0..hint_classes-1, a class of element i that the decoder knows too
// (in federated learning: the previous global update at that position).  Throws
// std::invalid_argument for hints or hint_classes out of range.
inline constexpr int kMaxHintClasses = 32;

void encode_levels_hinted(const int32_t* levels, const uint8_t* hints, std::size_t rows, std::size_t cols,
                          int hint_classes, const LevelCoderParams& params, std::vector<uint8_t>& out);

void decode_levels_hinted(const uint8_t* data, std::size_t size, const uint8_t* hints, std::size_t rows,
                          std::size_t cols, int hint_classes, const LevelCoderParams& params, int32_t* levels);

// decode_levels fused with reconstruction: values = float((level + offset) * step).
void decode_dequantize(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                       const LevelCoderParams& params, int64_t offset, double step, float* values);

}  // namespace nnsqueeze
