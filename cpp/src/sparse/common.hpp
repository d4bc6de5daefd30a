// Internal to the sparse kernels: the prepared operands shared by the scalar and AVX-512 row kernels,
// bounds-check failures, and the row-parallel driver.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "nnsqueeze/parallel.hpp"
#include "nnsqueeze/sparse/kernels.hpp"

namespace nnsqueeze::sparse::detail {

// Tokens are processed in chunks of at most kChunk; X^T of a chunk is (cols_pad x xs), xs a multiple
// of 16 (zero padded), so a row of it is one to four full 16-float vectors.
constexpr std::size_t kChunk = 64;

struct Work {
    std::size_t rows = 0, cols = 0, batch = 0;
    const float* x = nullptr;  // (batch, cols) as given; with batch == 1 padded to cols_pad in xt
    // batch == 1: xt = x padded with zeros to cols_pad, xs = 1, one chunk.
    // batch > 1: chunk c of X^T at xt + c * cols_pad * xs, holding chunk_tokens(c) tokens.
    const float* xt = nullptr;
    std::size_t cols_pad = 0, xs = 1, chunks = 1;
    const float* sx = nullptr;  // per-token sum of x (only where a kernel needs it)
    float* y = nullptr;         // (batch, rows)
    const float* bias = nullptr;
    bool accumulate = false;

    std::size_t chunk_tokens(std::size_t c) const {
        return batch == 1 ? 1 : std::min(kChunk, batch - c * kChunk);
    }
    const float* chunk_xt(std::size_t c) const { return xt + c * cols_pad * xs; }
};

// Builds xt (and sx if wanted) for a product; buffers are owned by the caller.
void prepare(Work& w, std::size_t cols_pad, bool want_sums, std::vector<float>& xt_buf,
             std::vector<float>& sx_buf);

[[noreturn]] void fail_pointer(const char* array, std::size_t i, uint64_t value, const char* rule, uint64_t limit);
[[noreturn]] void fail_index(const char* array, std::size_t i, uint64_t value, const char* what, uint64_t limit);

// The range [ptr[i], ptr[i + 1]) of entry i of a pointer array, checked to be ordered and within limit.
template <class Ptr>
inline void checked_range(const Ptr* ptr, std::size_t i, std::size_t limit, const char* name, std::size_t& begin,
                          std::size_t& end) {
    begin = ptr[i];
    end = ptr[i + 1];
    if (end < begin) fail_pointer(name, i + 1, end, "is less than the entry before it,", begin);
    if (end > limit) fail_pointer(name, i + 1, end, "points past the end of an array of length", limit);
}

// Checks col_idx[k0..k1) < cols (portable version; the AVX-512 kernels use a vector one).
template <class Idx>
inline void check_columns(const Idx* col_idx, std::size_t k0, std::size_t k1, std::size_t cols) {
    std::size_t top = 0;
    for (std::size_t k = k0; k < k1; ++k) top = std::max<std::size_t>(top, col_idx[k]);
    if (k1 > k0 && top >= cols)
        for (std::size_t k = k0; k < k1; ++k)
            if (col_idx[k] >= cols) fail_index("col_idx", k, col_idx[k], "columns", cols);
}

// Checks the groups [g0, g1) of a row: group_ptr ascending and within nnz.  Returns the entries
// [group_ptr[g0], group_ptr[g1]) of the row.
template <class Ptr>
inline void check_groups(const Ptr* group_ptr, std::size_t g0, std::size_t g1, std::size_t nnz, std::size_t& k0,
                         std::size_t& k1) {
    std::size_t prev = group_ptr[g0];
    if (prev > nnz) fail_pointer("group_ptr", g0, prev, "points past the end of an array of length", nnz);
    for (std::size_t g = g0 + 1; g <= g1; ++g) {
        const std::size_t v = group_ptr[g];
        if (v < prev) fail_pointer("group_ptr", g, v, "is less than the entry before it,", prev);
        if (v > nnz) fail_pointer("group_ptr", g, v, "points past the end of an array of length", nnz);
        prev = v;
    }
    k0 = group_ptr[g0];
    k1 = prev;
}

// Checks value_idx[g0..g1) < num_values.
template <class Vi>
inline void check_value_idx(const Vi* value_idx, std::size_t g0, std::size_t g1, std::size_t num_values) {
    for (std::size_t g = g0; g < g1; ++g)
        if (value_idx[g] >= num_values) fail_index("value_idx", g, value_idx[g], "values", num_values);
}

// Keeps a loop of scalar loads scalar: the compiler would otherwise turn it into gathers, which are
// slower here (GCC: an attribute; clang: a loop pragma inside).
#if defined(__clang__)
#define NNSQ_SCALAR_LOADS
#define NNSQ_SCALAR_LOOP _Pragma("clang loop vectorize(disable)")
#else
#define NNSQ_SCALAR_LOADS __attribute__((optimize("no-tree-vectorize")))
#define NNSQ_SCALAR_LOOP
#endif

// At batch 1, rows whose groups hold many entries on average (kLongGroups, set per path) take
// grouped_dot_b1; rows of shorter groups spread the values and take the gather loop (the loop exit of
// each short group would be mispredicted, and a gather loads 8 or 16 entries at once).
// sum over the groups g in [g0, g1) of mult(g) * sum of x[col_idx[k]] over the group's entries (batch
// 1; columns already checked).  The x values of a group are summed by scalar loads into four chains,
// then multiplied once: no per-entry value is formed.
template <class Ptr, class Idx, class Mult>
NNSQ_SCALAR_LOADS inline float grouped_dot_b1(const Ptr* group_ptr, std::size_t g0, std::size_t g1,
                                              const Idx* col_idx, const Mult& mult, const float* x) {
    float acc = 0.0f;
    for (std::size_t g = g0; g < g1; ++g) {
        const std::size_t b = group_ptr[g], e = group_ptr[g + 1];
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        std::size_t k = b;
        NNSQ_SCALAR_LOOP
        for (; k + 4 <= e; k += 4) {
            s0 += x[col_idx[k]];
            s1 += x[col_idx[k + 1]];
            s2 += x[col_idx[k + 2]];
            s3 += x[col_idx[k + 3]];
        }
        for (; k < e; ++k) s0 += x[col_idx[k]];
        acc += mult(g, g0) * ((s0 + s1) + (s2 + s3));
    }
    return acc;
}

// Row kernels: compute rows [r0, r1) of y for every token.  `scalar` versions are portable C++;
// `avx2` versions are compiled for AVX2 + FMA and `avx512` ones for AVX-512 (F, BW, VL, DQ), each
// called only where the CPU has it.
template <class Ptr, class Idx>
void csr_rows_scalar(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1);
template <class Ptr, class Idx>
void cer_rows_scalar(const CerView<Ptr, Idx>& a, const float* mult, float omega0, const Work& w, std::size_t r0,
                     std::size_t r1);
template <class Ptr, class Idx, class Vi>
void cser_rows_scalar(const CserView<Ptr, Idx, Vi>& a, const float* mult, const Work& w, std::size_t r0,
                      std::size_t r1);
void packed_panels_scalar(const PackedView& a, const float* table16, const Work& w, std::size_t p0, std::size_t p1);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NNSQ_HAVE_AVX2_KERNELS 1
template <class Ptr, class Idx>
void csr_rows_avx2(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1);
template <class Ptr, class Idx>
void cer_rows_avx2(const CerView<Ptr, Idx>& a, const float* mult, float omega0, const Work& w, std::size_t r0,
                   std::size_t r1);
template <class Ptr, class Idx, class Vi>
void cser_rows_avx2(const CserView<Ptr, Idx, Vi>& a, const float* mult, const Work& w, std::size_t r0,
                    std::size_t r1);
void packed_panels_avx2(const PackedView& a, const float* table16, const Work& w, std::size_t p0, std::size_t p1);

#define NNSQ_HAVE_AVX512_KERNELS 1
template <class Ptr, class Idx>
void csr_rows_avx512(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1);
template <class Ptr, class Idx>
void cer_rows_avx512(const CerView<Ptr, Idx>& a, const float* mult, float omega0, const Work& w, std::size_t r0,
                     std::size_t r1);
template <class Ptr, class Idx, class Vi>
void cser_rows_avx512(const CserView<Ptr, Idx, Vi>& a, const float* mult, const Work& w, std::size_t r0,
                      std::size_t r1);
void packed_panels_avx512(const PackedView& a, const float* table16, const Work& w, std::size_t p0, std::size_t p1);
// dst[j * ds + t] = src[t * ss + j] for 16 tokens t (those from `rows` on read as 0) and columns
// [0, cols) (cols a multiple of 16).
void transpose16_avx512(const float* src, std::size_t ss, std::size_t rows, std::size_t cols, float* dst,
                        std::size_t ds);
#endif

// Explicit instantiations of one instruction set's row kernels (csr_rows_ISA, ...) for every index width.
#define NNSQ_ROW_KERNELS_PI(ISA, P, I)                                                                           \
    template void csr_rows_##ISA<P, I>(const CsrView<P, I>&, const Work&, std::size_t, std::size_t);            \
    template void cer_rows_##ISA<P, I>(const CerView<P, I>&, const float*, float, const Work&, std::size_t,     \
                                       std::size_t);                                                            \
    template void cser_rows_##ISA<P, I, uint8_t>(const CserView<P, I, uint8_t>&, const float*, const Work&,     \
                                                 std::size_t, std::size_t);                                     \
    template void cser_rows_##ISA<P, I, uint16_t>(const CserView<P, I, uint16_t>&, const float*, const Work&,   \
                                                  std::size_t, std::size_t);
#define NNSQ_ROW_KERNELS_P(ISA, P) \
    NNSQ_ROW_KERNELS_PI(ISA, P, uint8_t) NNSQ_ROW_KERNELS_PI(ISA, P, uint16_t) NNSQ_ROW_KERNELS_PI(ISA, P, uint32_t)
#define NNSQ_INSTANTIATE_ROW_KERNELS(ISA) \
    NNSQ_ROW_KERNELS_P(ISA, uint8_t) NNSQ_ROW_KERNELS_P(ISA, uint16_t) NNSQ_ROW_KERNELS_P(ISA, uint32_t)

// The 2/3/4-bit tables as 16 floats for a 4-bit lookup that ignores the index bits above `bits`
// (entry k holds table[k mod 2^bits]); entries beyond table_size are 0.
void table16(const PackedView& a, float out[16]);
// The 8-bit table as 256 floats (entries beyond table_size are 0).
void table256(const PackedView& a, float out[256]);

// The index of 16-row panel p, unit u, row i, column c within the unit (portable decoding).
inline unsigned packed_index(const uint8_t* unit, int bits, std::size_t i, std::size_t c) {
    switch (bits) {
        case 8: return unit[i];
        case 4: return (unit[i] >> (4 * c)) & 15u;
        case 2: return (unit[i] >> (2 * c)) & 3u;
        default: {  // 3
            const unsigned lo = (unit[(c < 4 ? 0 : 16) + i] >> (2 * (c & 3))) & 3u;
            const unsigned hi = (unit[32 + i] >> c) & 1u;
            return lo | (hi << 2);
        }
    }
}

}  // namespace nnsqueeze::sparse::detail
