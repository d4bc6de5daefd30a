#include "nnsqueeze/checksum.hpp"

#include <array>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NNSQ_HAVE_CLMUL_CRC 1
#include <immintrin.h>
#endif

namespace nnsqueeze {
namespace {

constexpr uint32_t kReflectedPolynomial = 0xEDB88320u;

constexpr std::array<uint32_t, 256> make_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t b = 0; b < 256; ++b) {
        uint32_t c = b;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kReflectedPolynomial : c >> 1;
        table[b] = c;
    }
    return table;
}

constexpr std::array<uint32_t, 256> kTable = make_table();

// `state` is the inverted CRC, as the folding works on it.
uint32_t bytewise(const uint8_t* data, std::size_t size, uint32_t state) {
    for (std::size_t i = 0; i < size; ++i) state = kTable[(state ^ data[i]) & 0xFFu] ^ (state >> 8);
    return state;
}

#if NNSQ_HAVE_CLMUL_CRC
#define NNSQ_CLMUL __attribute__((target("pclmul,sse4.1")))

NNSQ_CLMUL inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// x * x^k (mod P) for the pair of constants in k, plus the next 16 bytes.
NNSQ_CLMUL inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next);
}

// Folds `size` bytes (>= 64, a multiple of 16) into the inverted CRC `state`: four 128-bit lanes
// run over 64-byte blocks, then fold into one, then Barrett-reduce to 32 bits.  The constants are
// x^k mod P for the bit-reflected polynomial (Gopal et al., "Fast CRC computation for generic
// polynomials using PCLMULQDQ", Intel 2009): k1 = x^(4*128+32), k2 = x^(4*128-32),
// k3 = x^(128+32), k4 = x^(128-32), k5 = x^64, and mu = floor(x^64 / P).
NNSQ_CLMUL uint32_t folded(const uint8_t* data, std::size_t size, uint32_t state) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly_mu = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i x1 = _mm_xor_si128(load16(data), _mm_cvtsi32_si128(static_cast<int>(state)));
    __m128i x2 = load16(data + 16);
    __m128i x3 = load16(data + 32);
    __m128i x4 = load16(data + 48);
    std::size_t at = 64;
    for (; at + 64 <= size; at += 64) {
        x1 = fold(x1, k1k2, load16(data + at));
        x2 = fold(x2, k1k2, load16(data + at + 16));
        x3 = fold(x3, k1k2, load16(data + at + 32));
        x4 = fold(x4, k1k2, load16(data + at + 48));
    }
    x1 = fold(x1, k3k4, x2);
    x1 = fold(x1, k3k4, x3);
    x1 = fold(x1, k3k4, x4);
    for (; at + 16 <= size; at += 16) x1 = fold(x1, k3k4, load16(data + at));
    // 128 -> 64 bits, 64 -> 32 bits, then the Barrett reduction.
    __m128i x = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(x1, k3k4, 0x10));
    x = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x, low32), k5, 0x00), _mm_srli_si128(x, 4));
    __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x, low32), poly_mu, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly_mu, 0x00);
    return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x, t), 1));
}

bool detect_clmul() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}
const bool kHasClmul = detect_clmul();
#endif

}  // namespace

bool crc32_accelerated() {
#if NNSQ_HAVE_CLMUL_CRC
    return kHasClmul;
#else
    return false;
#endif
}

uint32_t crc32_update(const uint8_t* data, std::size_t size, uint32_t crc, bool accelerated) {
    uint32_t state = ~crc;
#if NNSQ_HAVE_CLMUL_CRC
    if (accelerated && kHasClmul && size >= 64) {
        const std::size_t blocks = size & ~std::size_t{15};
        state = folded(data, blocks, state);
        data += blocks;
        size -= blocks;
    }
#else
    (void)accelerated;
#endif
    return ~bytewise(data, size, state);
}

}  // namespace nnsqueeze
