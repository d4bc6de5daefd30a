// Fast lossless coding of raw tensor elements by byte planes ("float streams").
//
// Floats carry their information unevenly: the exponent byte of trained weights has an
// entropy of 2-3 bits, the mantissa bytes are close to random.  The plane coder first
// rotates each float's bit pattern left by one bit (the sign moves to the lowest bit, so the
// top byte of float32 and bfloat16 is exactly the exponent), splits the elements into byte
// planes (most significant first), and codes each plane of each chunk in the cheapest of
// three modes: raw bytes, one constant byte, or static order-0 rANS with 12-bit frequencies
// and four interleaved states.  Integers are split without rotation.
//
// Chunks of `chunk_elements` elements are independent, so one tensor encodes and decodes on
// all threads; the caller keeps the chunk lengths (the entry points) next to the payload.
// docs/format.md ("Plane payload") specifies the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nnsqueeze {

inline constexpr int kPlaneProbBits = 12;
inline constexpr uint32_t kPlaneProbOne = 1u << kPlaneProbBits;
// Chunks are at most 2^18 elements, and a chunk costs at least 2 bytes per plane (a constant
// plane), which bounds the elements a payload can describe before anything is allocated.
inline constexpr std::size_t kMaxPlaneChunkElements = std::size_t{1} << 18;

struct PlaneLayout {
    std::size_t count = 0;           // elements
    int itemsize = 4;                // bytes per element: 1, 2, 4 or 8
    bool rotate_sign = false;        // floats: sign bit moved to the lowest bit before splitting
    std::size_t chunk_elements = 0;  // elements per chunk (> 0); the last chunk may be shorter

    std::size_t chunk_count() const { return count == 0 ? 0 : (count - 1) / chunk_elements + 1; }
};

// Throws std::invalid_argument for an impossible layout.
void check_plane_layout(const PlaneLayout& layout);

// Codes `layout.count` little-endian elements; returns one payload per chunk.
std::vector<std::vector<uint8_t>> encode_planes(const uint8_t* data, const PlaneLayout& layout, int threads);

// Decodes the concatenated chunk payloads (`chunk_lengths[i]` bytes each, summing to `size`)
// into `out` (count * itemsize bytes).  Throws BitstreamError on any malformed chunk.
void decode_planes(const uint8_t* payload, std::size_t size, const uint64_t* chunk_lengths, std::size_t num_chunks,
                   const PlaneLayout& layout, int threads, uint8_t* out);

}  // namespace nnsqueeze
