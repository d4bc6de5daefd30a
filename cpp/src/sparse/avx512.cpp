// AVX-512 row kernels.  Compiled for AVX-512 F/BW/VL/DQ with a target pragma (the rest of the library
// stays baseline x86-64); the driver calls them only where the CPU reports those extensions.
//
// batch 1: each row gathers x at its column indices, 16 at a time (masked gathers: a lane whose
//          column is >= cols is never loaded, it raises FormatError).  CSR multiplies each gathered
//          vector by the values; CER / CSER first sum a group's vectors and multiply once.
// batch > 1: X^T (cols x 16..64 tokens) makes x[j, tokens] one to four vectors; a row accumulates
//          values * X^T[j] in registers and scatters the result to y[tokens, row].
// packed:  16 rows of a panel are one vector; each column decodes its 16 indices (permute from a
//          16-entry table held in a register, int8 -> float, or a gather from the 256-entry table)
//          and multiply-adds them with x[j] broadcast, for up to 24 tokens kept in registers.
#include <utility>
#include <vector>

#include "common.hpp"

#if defined(NNSQ_HAVE_AVX512_KERNELS)

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2")
// GCC 12 flags the intentionally undefined vectors inside its own AVX-512 intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace nnsqueeze::sparse::detail {

namespace {

constexpr std::size_t kPrefetch = 2048;  // bytes ahead in the streamed format arrays

inline __mmask16 tail_mask(std::size_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

template <class Idx>
inline __m512i load_idx(const Idx* p, __mmask16 m);
template <>
inline __m512i load_idx<uint8_t>(const uint8_t* p, __mmask16 m) {
    return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p));
}
template <>
inline __m512i load_idx<uint16_t>(const uint16_t* p, __mmask16 m) {
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
}
template <>
inline __m512i load_idx<uint32_t>(const uint32_t* p, __mmask16 m) {
    return _mm512_maskz_loadu_epi32(m, p);
}

// Checks col_idx[k0..k1) < cols with vector maxima (the hot loops then read x unchecked).
template <class Idx>
inline void check_columns_v(const Idx* col_idx, std::size_t k0, std::size_t k1, std::size_t cols) {
    __m512i top = _mm512_setzero_si512();
    std::size_t k = k0;
    for (; k + 16 <= k1; k += 16) top = _mm512_max_epu32(top, load_idx(col_idx + k, 0xFFFF));
    if (k < k1) top = _mm512_max_epu32(top, load_idx(col_idx + k, tail_mask(k1 - k)));
    if (__builtin_expect(k1 > k0 && std::size_t(uint32_t(_mm512_reduce_max_epu32(top))) >= cols, 0))
        check_columns(col_idx, k0, k1, cols);  // finds the entry and throws
}

// x[col_idx[k + lane]] for the lanes in m (columns already checked).
template <class Idx>
inline __m512 gather_x(const Idx* col_idx, std::size_t k, __mmask16 m, const float* x) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, load_idx(col_idx + k, m), x, 4);
}

// batch 1: y[r] = (y[r]) + bias[r] + s
inline void store_one(const Work& w, std::size_t r, float s) {
    float& out = w.y[r];
    out = (w.accumulate ? out : 0.0f) + (w.bias ? w.bias[r] : 0.0f) + s;
}

// batch > 1: y[t0 + t, r] for the nt tokens of a chunk held in NV vectors.
template <int NV>
inline void store_tokens(const Work& w, std::size_t r, std::size_t t0, std::size_t nt, const __m512* acc,
                         const __m512i& lane_rows) {
    const __m512 b = _mm512_set1_ps(w.bias ? w.bias[r] : 0.0f);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
        if (nt <= std::size_t(16 * v)) break;
        const __mmask16 m = tail_mask(nt - 16 * v);
        float* base = w.y + (t0 + 16 * v) * w.rows + r;
        __m512 out = _mm512_add_ps(acc[v], b);
        if (w.accumulate) out = _mm512_add_ps(out, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane_rows, base, 4));
        _mm512_mask_i32scatter_ps(base, m, lane_rows, out, 4);
    }
}

inline __m512i lane_times(std::size_t rows) {
    return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                              _mm512_set1_epi32(static_cast<int>(rows)));
}

// Accumulators of one row for NV vectors of tokens, P partial sums (NV * P >= 4 chains in flight).
template <int NV>
struct Acc {
    static constexpr int P = NV == 1 ? 4 : NV == 2 ? 2 : 1;
    __m512 v[P][NV];
    inline void zero() {
#pragma GCC unroll 4
        for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
            for (int i = 0; i < NV; ++i) v[p][i] = _mm512_setzero_ps();
    }
    inline void sum(__m512* out) const {
#pragma GCC unroll 4
        for (int i = 0; i < NV; ++i) {
            __m512 t = v[0][i];
#pragma GCC unroll 4
            for (int p = 1; p < P; ++p) t = _mm512_add_ps(t, v[p][i]);
            out[i] = t;
        }
    }
};

// ---------------------------------------------------------------------------------------------- CSR

template <class Ptr, class Idx>
void csr_b1(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1) {
    const float* x = w.xt;
    for (std::size_t r = r0; r < r1; ++r) {
        std::size_t p0, p1;
        checked_range(a.row_ptr, r, a.nnz, "row_ptr", p0, p1);
        check_columns_v(a.col_idx, p0, p1, a.cols);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        std::size_t k = p0;
        for (; k + 32 <= p1; k += 32) {
            // the streams of values and indices run from memory: fetch ahead of the gathers
            _mm_prefetch(reinterpret_cast<const char*>(a.values + k) + kPrefetch, _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(a.values + k) + kPrefetch + 64, _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(a.col_idx + k) + kPrefetch, _MM_HINT_T0);
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.values + k), gather_x(a.col_idx, k, 0xFFFF, x), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a.values + k + 16), gather_x(a.col_idx, k + 16, 0xFFFF, x), acc1);
        }
        for (; k < p1; k += 16) {
            const __mmask16 m = tail_mask(p1 - k);
            acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a.values + k), gather_x(a.col_idx, k, m, x), acc0);
        }
        store_one(w, r, _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)));
    }
}

template <class Ptr, class Idx, int NV>
void csr_bn(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1) {
    constexpr int P = Acc<NV>::P;
    const __m512i lanes = lane_times(w.rows);
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        const std::size_t xs = w.xs, nt = w.chunk_tokens(c), t0 = c * kChunk;
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t p0, p1;
            checked_range(a.row_ptr, r, a.nnz, "row_ptr", p0, p1);
            check_columns_v(a.col_idx, p0, p1, a.cols);
            Acc<NV> acc;
            acc.zero();
            const Idx* col = a.col_idx;
            const float* val = a.values;
            std::size_t k = p0;
            for (; k + P <= p1; k += P) {
                _mm_prefetch(reinterpret_cast<const char*>(val + k) + kPrefetch, _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(col + k) + kPrefetch, _MM_HINT_T0);
#pragma GCC unroll 4
                for (int p = 0; p < P; ++p) {
                    const float* xr = xt + std::size_t(col[k + p]) * xs;
                    const __m512 v = _mm512_set1_ps(val[k + p]);
#pragma GCC unroll 4
                    for (int i = 0; i < NV; ++i) acc.v[p][i] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr + 16 * i), acc.v[p][i]);
                }
            }
            for (; k < p1; ++k) {
                const float* xr = xt + std::size_t(col[k]) * xs;
                const __m512 v = _mm512_set1_ps(val[k]);
#pragma GCC unroll 4
                for (int i = 0; i < NV; ++i) acc.v[0][i] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr + 16 * i), acc.v[0][i]);
            }
            __m512 out[NV];
            acc.sum(out);
            store_tokens<NV>(w, r, t0, nt, out, lanes);
        }
    }
}

// ------------------------------------------------------------------------------------- CER and CSER

// Checks group_ptr[g0..g1] ascending and group_ptr[g1] <= nnz (vector compares of neighbours).
template <class Ptr>
inline void check_groups_v(const Ptr* group_ptr, std::size_t g0, std::size_t g1, std::size_t nnz) {
    __mmask16 bad = 0;
    std::size_t g = g0;
    for (; g + 16 <= g1; g += 16)
        bad |= _mm512_cmplt_epu32_mask(load_idx(group_ptr + g + 1, 0xFFFF), load_idx(group_ptr + g, 0xFFFF));
    if (g < g1) {
        const __mmask16 m = tail_mask(g1 - g);
        bad |= _mm512_mask_cmplt_epu32_mask(m, load_idx(group_ptr + g + 1, m), load_idx(group_ptr + g, m));
    }
    if (__builtin_expect(bad != 0 || std::size_t(group_ptr[g1]) > nnz || group_ptr[g0] > group_ptr[g1], 0)) {
        std::size_t k0, k1;
        check_groups(group_ptr, g0, g1, nnz, k0, k1);  // finds the entry and throws
    }
}

// The groups of row r, checked before any arithmetic: [g0, g1) and every column of the row.
template <class Ptr, class Idx>
inline void row_groups(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
                       const Idx* col_idx, std::size_t nnz, std::size_t cols, std::size_t r, std::size_t& g0,
                       std::size_t& g1) {
    checked_range(row_ptr, r, groups, "row_ptr", g0, g1);
    if (g1 - g0 > max_groups)
        fail_pointer("row_ptr", r + 1, g1, "gives a row more groups than there are explicit values after", g0);
    check_groups_v(group_ptr, g0, g1, nnz);
    check_columns_v(col_idx, group_ptr[g0], group_ptr[g1], cols);
}

// Spreads each group's multiplier over its entries: vals[k - k0] = mult(g) for the entries k of group g.
// Two unconditional 16-wide stores per group cover groups of up to 32 entries without a data-dependent
// branch (what a group writes past its end, the next group overwrites; vals has 32 floats of slack).
template <class Ptr, class Mult>
inline void spread_values(const Ptr* group_ptr, std::size_t g0, std::size_t g1, std::size_t k0, const Mult& mult,
                          float* vals) {
    for (std::size_t g = g0; g < g1; ++g) {
        const __m512 m = _mm512_set1_ps(mult(g, g0));
        const std::size_t b = std::size_t(group_ptr[g]) - k0, e = std::size_t(group_ptr[g + 1]) - k0;
        _mm512_storeu_ps(vals + b, m);
        _mm512_storeu_ps(vals + b + 16, m);
        for (std::size_t i = b + 32; i < e; i += 16) _mm512_storeu_ps(vals + i, m);
    }
}

// Groups of at least this many entries on average take grouped_dot_b1 at batch 1 (16-wide gathers
// beat it on groups of ~29 entries: 910 against 1090 us on a 4096^2 matrix at 90 % zeros; on groups
// of ~200 it is 1.3x faster).
constexpr std::size_t kLongGroups = 64;

// Shared by CER and CSER.  Mult(g, g0) is the multiplier of group g of a row starting at group g0.
// batch 1: rows of long groups sum each group's x (grouped_dot_b1); otherwise each group's value is
// spread over its entries in a small scratch array (a few masked stores per group), then the row is
// gathered 16 entries at a time across group boundaries as in CSR: short groups would leave most
// lanes of a per-group gather idle.
template <class Ptr, class Idx, class Mult>
void grouped_b1(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
                const Idx* col_idx, std::size_t nnz, std::size_t cols, float omega0, const Work& w, std::size_t r0,
                std::size_t r1, Mult mult) {
    const float* x = w.xt;
    const float base = omega0 != 0.0f ? omega0 * w.sx[0] : 0.0f;
    thread_local std::vector<float> scratch;
    for (std::size_t r = r0; r < r1; ++r) {
        std::size_t g0, g1;
        row_groups(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, r, g0, g1);
        mult.check(g0, g1);
        const std::size_t k0 = group_ptr[g0], len = std::size_t(group_ptr[g1]) - k0;
        if (len >= kLongGroups * (g1 - g0)) {
            store_one(w, r, base + grouped_dot_b1(group_ptr, g0, g1, col_idx, mult, x));
            continue;
        }
        if (scratch.size() < len + 32) scratch.resize(len + 32);
        float* vals = scratch.data();
        spread_values(group_ptr, g0, g1, k0, mult, vals);
        const Idx* col = col_idx + k0;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        std::size_t k = 0;
        for (; k + 32 <= len; k += 32) {
            _mm_prefetch(reinterpret_cast<const char*>(col + k) + kPrefetch, _MM_HINT_T0);
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(vals + k), gather_x(col, k, 0xFFFF, x), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(vals + k + 16), gather_x(col, k + 16, 0xFFFF, x), acc1);
        }
        for (; k < len; k += 16) {
            const __mmask16 m = tail_mask(len - k);
            acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, vals + k), gather_x(col, k, m, x), acc0);
        }
        store_one(w, r, base + _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)));
    }
}

// batch > 1: as CSR, with each entry's value from the spread group values (one flat loop per row:
// per-group loops of varying length would mispredict a branch per group).
template <int NV, class Ptr, class Idx, class Mult>
void grouped_bn(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
                const Idx* col_idx, std::size_t nnz, std::size_t cols, float omega0, const Work& w, std::size_t r0,
                std::size_t r1, Mult mult) {
    constexpr int P = Acc<NV>::P;
    const __m512i lanes = lane_times(w.rows);
    thread_local std::vector<float> scratch;
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        const std::size_t xs = w.xs, nt = w.chunk_tokens(c), t0 = c * kChunk;
        __m512 base[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
            base[v] = _mm512_setzero_ps();
            if (omega0 != 0.0f && nt > std::size_t(16 * v))
                base[v] = _mm512_mul_ps(_mm512_set1_ps(omega0),
                                        _mm512_maskz_loadu_ps(tail_mask(nt - 16 * v), w.sx + t0 + 16 * v));
        }
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t g0, g1;
            row_groups(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, r, g0, g1);
            mult.check(g0, g1);
            const std::size_t k0 = group_ptr[g0], len = std::size_t(group_ptr[g1]) - k0;
            Acc<NV> acc;
            acc.zero();
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc.v[0][v] = base[v];
            if (len >= 48 * (g1 - g0)) {  // long groups: the value stays in a register for the group
                for (std::size_t g = g0; g < g1; ++g) {
                    const __m512 m = _mm512_set1_ps(mult(g, g0));
                    const std::size_t e = group_ptr[g + 1];
                    std::size_t k = group_ptr[g];
                    for (; k + P <= e; k += P) {
                        _mm_prefetch(reinterpret_cast<const char*>(col_idx + k) + kPrefetch, _MM_HINT_T0);
#pragma GCC unroll 4
                        for (int p = 0; p < P; ++p) {
                            const float* xr = xt + std::size_t(col_idx[k + p]) * xs;
#pragma GCC unroll 4
                            for (int i = 0; i < NV; ++i)
                                acc.v[p][i] = _mm512_fmadd_ps(m, _mm512_loadu_ps(xr + 16 * i), acc.v[p][i]);
                        }
                    }
                    for (; k < e; ++k) {
                        const float* xr = xt + std::size_t(col_idx[k]) * xs;
#pragma GCC unroll 4
                        for (int i = 0; i < NV; ++i)
                            acc.v[0][i] = _mm512_fmadd_ps(m, _mm512_loadu_ps(xr + 16 * i), acc.v[0][i]);
                    }
                }
                __m512 out[NV];
                acc.sum(out);
                store_tokens<NV>(w, r, t0, nt, out, lanes);
                continue;
            }
            if (scratch.size() < len + 32) scratch.resize(len + 32);
            const float* val = scratch.data();
            spread_values(group_ptr, g0, g1, k0, mult, scratch.data());
            const Idx* col = col_idx + k0;
            std::size_t k = 0;
            for (; k + P <= len; k += P) {
                _mm_prefetch(reinterpret_cast<const char*>(col + k) + kPrefetch, _MM_HINT_T0);
#pragma GCC unroll 4
                for (int p = 0; p < P; ++p) {
                    const float* xr = xt + std::size_t(col[k + p]) * xs;
                    const __m512 m = _mm512_set1_ps(val[k + p]);
#pragma GCC unroll 4
                    for (int i = 0; i < NV; ++i) acc.v[p][i] = _mm512_fmadd_ps(m, _mm512_loadu_ps(xr + 16 * i), acc.v[p][i]);
                }
            }
            for (; k < len; ++k) {
                const float* xr = xt + std::size_t(col[k]) * xs;
                const __m512 m = _mm512_set1_ps(val[k]);
#pragma GCC unroll 4
                for (int i = 0; i < NV; ++i) acc.v[0][i] = _mm512_fmadd_ps(m, _mm512_loadu_ps(xr + 16 * i), acc.v[0][i]);
            }
            __m512 out[NV];
            acc.sum(out);
            store_tokens<NV>(w, r, t0, nt, out, lanes);
        }
    }
}

struct CerMult {
    const float* mult;
    inline void check(std::size_t, std::size_t) const {}
    inline float operator()(std::size_t g, std::size_t g0) const { return mult[g - g0]; }
};

template <class Vi>
struct CserMult {
    const Vi* value_idx;
    const float* mult;
    std::size_t num_values;
    inline void check(std::size_t g0, std::size_t g1) const {
        __m512i top = _mm512_setzero_si512();
        for (std::size_t g = g0; g < g1; g += 16)
            top = _mm512_max_epu32(top, load_idx(value_idx + g, tail_mask(g1 - g)));
        if (__builtin_expect(g1 > g0 && std::size_t(uint32_t(_mm512_reduce_max_epu32(top))) >= num_values, 0))
            check_value_idx(value_idx, g0, g1, num_values);
    }
    inline float operator()(std::size_t g, std::size_t) const { return mult[value_idx[g]]; }
};

template <class Ptr, class Idx, class Mult>
void grouped(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
             const Idx* col_idx, std::size_t nnz, std::size_t cols, float omega0, const Work& w, std::size_t r0,
             std::size_t r1, Mult mult) {
    if (w.batch == 1)
        return grouped_b1(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
    switch (w.xs / 16) {
        case 1: return grouped_bn<1>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
        case 2: return grouped_bn<2>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
        case 3: return grouped_bn<3>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
        default: return grouped_bn<4>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
    }
}

// ------------------------------------------------------------------------------------------- packed

// Decoders of one unit (16 rows x C columns): load() reads its bytes, col<c>() gives column c's values.
struct Dec8Affine {
    static constexpr int C = 1;
    static constexpr std::size_t UB = 16;
    __m512i v;
    inline void load(const uint8_t* u) { v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u))); }
    template <int c>
    inline __m512 col(__m512, const float*) const { return _mm512_cvtepi32_ps(v); }
};

struct Dec8Table {
    static constexpr int C = 1;
    static constexpr std::size_t UB = 16;
    __m512i v;
    inline void load(const uint8_t* u) { v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u))); }
    template <int c>
    inline __m512 col(__m512, const float* table256) const { return _mm512_i32gather_ps(v, table256, 4); }
};

struct Dec4 {
    static constexpr int C = 2;
    static constexpr std::size_t UB = 16;
    __m512i v;
    inline void load(const uint8_t* u) { v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u))); }
    template <int c>
    inline __m512 col(__m512 t, const float*) const {  // vpermps reads the low 4 bits of each index
        if constexpr (c == 0) return _mm512_permutexvar_ps(v, t);
        else return _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t);
    }
};

struct Dec2 {
    static constexpr int C = 4;
    static constexpr std::size_t UB = 16;
    __m512i v;
    inline void load(const uint8_t* u) { v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u))); }
    template <int c>
    inline __m512 col(__m512 t, const float*) const {  // the table repeats every 4 entries
        if constexpr (c == 0) return _mm512_permutexvar_ps(v, t);
        else return _mm512_permutexvar_ps(_mm512_srli_epi32(v, 2 * c), t);
    }
};

struct Dec3 {
    static constexpr int C = 8;
    static constexpr std::size_t UB = 48;
    __m512i lo0, lo1, hi;
    inline void load(const uint8_t* u) {
        lo0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u)));
        lo1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u + 16)));
        hi = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u + 32)));
    }
    template <int c>
    inline __m512 col(__m512 t, const float*) const {
        const __m512i lo = c < 4 ? lo0 : lo1;
        constexpr int s = 2 * (c & 3);
        const __m512i l = s ? _mm512_srli_epi32(lo, s) : lo;
        __m512i h;  // bit c of hi moved to bit 2
        if constexpr (c < 2) h = _mm512_slli_epi32(hi, 2 - c);
        else if constexpr (c == 2) h = hi;
        else h = _mm512_srli_epi32(hi, c - 2);
        // (l & 3) | (h & ~3): bits 0-1 from l, bit 2 from h; the table repeats every 8 entries
        const __m512i idx = _mm512_ternarylogic_epi32(l, h, _mm512_set1_epi32(3), 0xE4);
        return _mm512_permutexvar_ps(idx, t);
    }
};

constexpr int kMaxBlock = 24;  // tokens whose accumulators stay in registers

// Independent accumulator sets for TB tokens: at least four multiply-add chains in flight.
constexpr int splits(int tb) { return tb >= 4 ? 1 : (tb == 1 ? 4 : 2); }

// acc[s][t] += value(column c of the unit) * x^T[c, t]
template <class D, int TB, int S, int s, int c>
inline void column_fma(const D& d, __m512 tab, const float* t256, const float* xb, std::size_t xs,
                       __m512 (&acc)[S][TB]) {
    const __m512 wv = d.template col<c>(tab, t256);
    const float* xr = xb + c * xs;
#pragma GCC unroll 32
    for (int t = 0; t < TB; ++t) acc[s][t] = _mm512_fmadd_ps(wv, _mm512_set1_ps(xr[t]), acc[s][t]);
}

// One unit, the su-th of a step: its columns go to accumulator sets (su * C + c) mod S.
template <class D, int TB, int S, int su, int... cs>
inline void unit_fma(const uint8_t* unit, __m512 tab, const float* t256, const float* xb, std::size_t xs,
                     __m512 (&acc)[S][TB], std::integer_sequence<int, cs...>) {
    D d;
    d.load(unit);
    (column_fma<D, TB, S, (su * D::C + cs) % S, cs>(d, tab, t256, xb, xs, acc), ...);
}

template <class D, int TB, int S, int... sus>
inline void step_fma(const uint8_t* pd, std::size_t u, __m512 tab, const float* t256, const float* xt,
                     std::size_t xs, __m512 (&acc)[S][TB], std::integer_sequence<int, sus...>) {
    (unit_fma<D, TB, S, sus>(pd + (u + sus) * D::UB, tab, t256, xt + (u + sus) * D::C * xs, xs, acc,
                             std::make_integer_sequence<int, D::C>{}),
     ...);
}

// out[t] = sum over the panel's columns of decoded values * x^T[j, t], for TB tokens.
template <class D, int TB>
__attribute__((noinline)) void panel_block(const uint8_t* pd, std::size_t units, __m512 tab, const float* t256,
                                           const float* xt, std::size_t xs, __m512* out) {
    constexpr int S = splits(TB);
    constexpr int SU = S > D::C ? S / D::C : 1;  // units per step, so that every set gets columns
    __m512 acc[S][TB];
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s)
#pragma GCC unroll 32
        for (int t = 0; t < TB; ++t) acc[s][t] = _mm512_setzero_ps();
    std::size_t u = 0;
    for (; u + SU <= units; u += SU) {
        _mm_prefetch(reinterpret_cast<const char*>(pd + u * D::UB) + kPrefetch, _MM_HINT_T0);
        step_fma<D, TB, S>(pd, u, tab, t256, xt, xs, acc, std::make_integer_sequence<int, SU>{});
    }
    for (; u < units; ++u)
        step_fma<D, TB, S>(pd, u, tab, t256, xt, xs, acc, std::integer_sequence<int, 0>{});
#pragma GCC unroll 32
    for (int t = 0; t < TB; ++t) {
        __m512 v = acc[0][t];
#pragma GCC unroll 4
        for (int s = 1; s < S; ++s) v = _mm512_add_ps(v, acc[s][t]);
        out[t] = v;
    }
}

template <class D, int TB = 1>
inline void run_block(int tb, const uint8_t* pd, std::size_t units, __m512 tab, const float* t256,
                      const float* xt, std::size_t xs, __m512* out) {
    if constexpr (TB <= kMaxBlock) {
        if (tb == TB) return panel_block<D, TB>(pd, units, tab, t256, xt, xs, out);
        return run_block<D, TB + 1>(tb, pd, units, tab, t256, xt, xs, out);
    }
}

template <class D>
void panels(const PackedView& a, const float* table, const Work& w, std::size_t p0, std::size_t p1) {
    const std::size_t units = (a.cols + D::C - 1) / D::C;
    const __m512 tab = a.bits == 8 ? _mm512_setzero_ps() : _mm512_loadu_ps(table);
    const float* t256 = a.bits == 8 ? table : nullptr;
    const __m512 scale = _mm512_set1_ps(a.scale);
    alignas(64) __m512 out[kMaxBlock];
    for (std::size_t p = p0; p < p1; ++p) {
        const std::size_t r = p * kPanelRows;
        const __mmask16 rm = tail_mask(a.rows - r);
        const uint8_t* pd = a.data + p * units * D::UB;
        const __m512 bias = w.bias ? _mm512_maskz_loadu_ps(rm, w.bias + r) : _mm512_setzero_ps();
        for (std::size_t c = 0; c < w.chunks; ++c) {
            const float* xt = w.chunk_xt(c);
            const std::size_t nt = w.chunk_tokens(c), t0 = c * kChunk;
            const std::size_t nb = (nt + kMaxBlock - 1) / kMaxBlock;  // balanced blocks of <= 24 tokens
            for (std::size_t b = 0; b < nb; ++b) {
                const std::size_t tb0 = nt * b / nb, tb1 = nt * (b + 1) / nb;
                run_block<D>(static_cast<int>(tb1 - tb0), pd, units, tab, t256, xt + tb0, w.xs, out);
                for (std::size_t t = 0; t < tb1 - tb0; ++t) {
                    const std::size_t tok = t0 + tb0 + t;
                    __m512 v = out[t];
                    if (a.affine) {
                        const float off = a.offset != 0.0f ? a.offset * w.sx[tok] : 0.0f;
                        v = _mm512_fmadd_ps(v, scale, _mm512_set1_ps(off));
                    }
                    v = _mm512_add_ps(v, bias);
                    float* yp = w.y + tok * a.rows + r;
                    if (w.accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rm, yp));
                    _mm512_mask_storeu_ps(yp, rm, v);
                }
            }
        }
    }
}

}  // namespace

void transpose16_avx512(const float* src, std::size_t ss, std::size_t rows, std::size_t cols, float* dst,
                        std::size_t ds) {
    for (std::size_t j = 0; j < cols; j += 16) {
        __m512 r[16], t[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i)
            r[i] = std::size_t(i) < rows ? _mm512_loadu_ps(src + i * ss + j) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 16; i += 4) {
            r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
            r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
            r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 16; h += 8)
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i) {
                t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
                t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
            }
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
            r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + (j + i) * ds, r[i]);
    }
}

template <class Ptr, class Idx>
void csr_rows_avx512(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1) {
    if (w.batch == 1) return csr_b1(a, w, r0, r1);
    switch (w.xs / 16) {
        case 1: return csr_bn<Ptr, Idx, 1>(a, w, r0, r1);
        case 2: return csr_bn<Ptr, Idx, 2>(a, w, r0, r1);
        case 3: return csr_bn<Ptr, Idx, 3>(a, w, r0, r1);
        default: return csr_bn<Ptr, Idx, 4>(a, w, r0, r1);
    }
}

template <class Ptr, class Idx>
void cer_rows_avx512(const CerView<Ptr, Idx>& a, const float* mult, float omega0, const Work& w, std::size_t r0,
                     std::size_t r1) {
    grouped(a.row_ptr, a.group_ptr, a.groups, a.num_omega - 1, a.col_idx, a.nnz, a.cols, omega0, w, r0, r1,
            CerMult{mult});
}

template <class Ptr, class Idx, class Vi>
void cser_rows_avx512(const CserView<Ptr, Idx, Vi>& a, const float* mult, const Work& w, std::size_t r0,
                      std::size_t r1) {
    grouped(a.row_ptr, a.group_ptr, a.groups, a.groups, a.col_idx, a.nnz, a.cols, a.omega0, w, r0, r1,
            CserMult<Vi>{a.value_idx, mult, a.num_values});
}

void packed_panels_avx512(const PackedView& a, const float* table, const Work& w, std::size_t p0, std::size_t p1) {
    switch (a.bits) {
        case 2: return panels<Dec2>(a, table, w, p0, p1);
        case 3: return panels<Dec3>(a, table, w, p0, p1);
        case 4: return panels<Dec4>(a, table, w, p0, p1);
        default: return a.affine ? panels<Dec8Affine>(a, table, w, p0, p1) : panels<Dec8Table>(a, table, w, p0, p1);
    }
}

NNSQ_INSTANTIATE_ROW_KERNELS(avx512)

}  // namespace nnsqueeze::sparse::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#endif  // NNSQ_HAVE_AVX512_KERNELS
