// Fast coding of integer quantization levels: tokens under static context tables (method 6).
//
// Each level q becomes a token, its magnitude class, plus raw bits:
//   |q| < 16          token |q|
//   |q| >= 16         with n = floor(log2 |q|): token 16 + 4 (n - 4) + the two bits below the
//                     leading one; the n - 2 bits below those are raw
//   q != 0            one raw sign bit (1 = negative)
// Tokens are coded with rANS under one of 40 context classes per element: the expected magnitude
// from the running magnitudes of the row (levels up to four positions back) and of the column over
// earlier rows, relative to the chunk's running mean, in quarter octaves (as the CABAC level coder
// selects its scale classes).  Each chunk carries a 12-bit frequency table per class it uses, so a
// decoder reads a token with one table lookup and no adaptation.  docs/format.md ("Token payload")
// specifies the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nnsqueeze {

inline constexpr int kTokenClasses = 20;
inline constexpr int kTokens = 120;  // enough for |q| up to 2^30 - 1
// No token has a frequency above this in 2^12, so every element costs at least
// log2(4096 / 4080) bits and a payload bounds the elements it can carry.
inline constexpr uint32_t kMaxTokenFreq = 4096 - 16;

// Upper bound on the elements a token payload of `payload_bytes` can carry.
uint64_t max_elements_for_token_payload(std::size_t payload_bytes);

// Codes rows x cols levels (|q| <= kMaxAbsLevel; std::invalid_argument otherwise).
void encode_tokens(const int32_t* levels, std::size_t rows, std::size_t cols, std::vector<uint8_t>& out);

// Decodes rows x cols levels; BitstreamError for any malformed payload.
void decode_tokens(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols, int32_t* levels);

// decode_tokens fused with reconstruction: values = float((level + offset) * step).
void decode_tokens_dequantize(const uint8_t* data, std::size_t size, std::size_t rows, std::size_t cols,
                              int64_t offset, double step, float* values);

}  // namespace nnsqueeze
