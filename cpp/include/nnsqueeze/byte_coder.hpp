// Lossless coding of raw element bytes (float bit patterns, wide integers, bools).
//
// Each element's bytes are coded from the most significant byte down; each byte is
// binarized along a binary tree whose 255 nodes per byte plane are context models, so
// the coder learns the order-0 distribution of every byte plane (exponent bytes of
// floats compress well, low mantissa bytes cost about 8 bits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nnsqueeze {

// `data` holds `count` little-endian elements of `itemsize` bytes (1, 2, 4 or 8).
void encode_bytes(const uint8_t* data, std::size_t count, int itemsize, std::vector<uint8_t>& out);

// Decodes `count` elements into `data`.  Throws BitstreamError on malformed payloads.
void decode_bytes(const uint8_t* payload, std::size_t size, std::size_t count, int itemsize, uint8_t* data);

}  // namespace nnsqueeze
