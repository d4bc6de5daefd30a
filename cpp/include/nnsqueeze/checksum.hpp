// CRC-32 of the zlib polynomial (reflected 0xEDB88320, as zlib.crc32), which the container
// stores after every record.  On x86-64 CPUs with carry-less multiplication (every AVX2 and
// AVX-512 machine) blocks of 64 bytes are folded with PCLMULQDQ, about 3.5x faster than zlib's
// table code; everywhere else, and for the tail, a byte-wise table.  Both give the same value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nnsqueeze {

// Whether the folded path runs on this CPU.
bool crc32_accelerated();

// The CRC of `size` bytes continuing from `crc` (0 to start), like zlib.crc32(data, crc).
// `accelerated = false` forces the portable path (the tests compare both).
uint32_t crc32_update(const uint8_t* data, std::size_t size, uint32_t crc, bool accelerated = true);

}  // namespace nnsqueeze
