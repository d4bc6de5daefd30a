// AVX2 + FMA row kernels, for the x86-64 CPUs without AVX-512 (most AMD EPYC and Ryzen before Zen 4,
// most laptops).  Compiled for AVX2/FMA with a target pragma; the driver calls them only where the CPU
// reports both.  The same plan as the AVX-512 kernels, on 8 lanes and without masked memory
// operations or scatters (tails run scalar, token results leave through a small buffer):
//
// batch 1: each row gathers x at 8 column indices at a time.  CSR multiplies by the values; CER and
//          CSER first spread each group's value over its entries, then run the same loop.
// batch > 1: X^T (cols x 16..64 tokens) makes x[j, tokens] two to eight vectors; a row accumulates
//          value * X^T[j] in registers.
// packed:  the 16 rows of a panel are two vectors; a column's 16 indices are decoded by table
//          lookups in registers (vpermps on 8 entries; 16-entry tables blend two lookups on index
//          bit 3; the 8-bit table is gathered), then multiply-added with x[j] broadcast, for up to
//          4 tokens at a time.
#include <algorithm>
#include <vector>

#include "common.hpp"

#if defined(NNSQ_HAVE_AVX2_KERNELS)

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2")
#endif

namespace nnsqueeze::sparse::detail {

namespace {

constexpr std::size_t kPrefetch = 2048;  // bytes ahead in the streamed format arrays

// 8 indices from p (exactly 8 elements are read).
template <class Idx>
inline __m256i load_idx8(const Idx* p);
template <>
inline __m256i load_idx8<uint8_t>(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
template <>
inline __m256i load_idx8<uint16_t>(const uint16_t* p) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <>
inline __m256i load_idx8<uint32_t>(const uint32_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The largest of p[b..e) (0 if empty), by vector maxima.
template <class Idx>
inline std::size_t max_index(const Idx* p, std::size_t b, std::size_t e) {
    __m256i top = _mm256_setzero_si256();
    std::size_t k = b;
    for (; k + 8 <= e; k += 8) top = _mm256_max_epu32(top, load_idx8(p + k));
    alignas(32) uint32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), top);
    std::size_t m = 0;
    for (uint32_t v : lanes) m = std::max<std::size_t>(m, v);
    for (; k < e; ++k) m = std::max<std::size_t>(m, p[k]);
    return m;
}

// Checks col_idx[k0..k1) < cols (the hot loops then read x unchecked).
template <class Idx>
inline void check_columns_v(const Idx* col_idx, std::size_t k0, std::size_t k1, std::size_t cols) {
    if (__builtin_expect(k1 > k0 && max_index(col_idx, k0, k1) >= cols, 0))
        check_columns(col_idx, k0, k1, cols);  // finds the entry and throws
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Lanes [0, n) set, for maskstore (n <= 8).
inline __m256i lane_mask(std::size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// sum over k < len of vals[k] * x[col[k]] (columns already checked).
template <class Idx>
inline float dot_b1(const float* vals, const Idx* col, std::size_t len, const float* x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    std::size_t k = 0;
    for (; k + 32 <= len; k += 32) {
        _mm_prefetch(reinterpret_cast<const char*>(vals + k) + kPrefetch, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(vals + k) + kPrefetch + 64, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(col + k) + kPrefetch, _MM_HINT_T0);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k), _mm256_i32gather_ps(x, load_idx8(col + k), 4), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k + 8), _mm256_i32gather_ps(x, load_idx8(col + k + 8), 4), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k + 16), _mm256_i32gather_ps(x, load_idx8(col + k + 16), 4), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k + 24), _mm256_i32gather_ps(x, load_idx8(col + k + 24), 4), a3);
    }
    for (; k + 8 <= len; k += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k), _mm256_i32gather_ps(x, load_idx8(col + k), 4), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < len; ++k) s += vals[k] * x[col[k]];
    return s;
}

// acc[i] += vals[k] * X^T[col[k]][8i..8i+8) for k < len; NY vectors of tokens, P partial sums.
template <int NY>
struct Acc {
    static constexpr int P = NY == 2 ? 2 : 1;
    __m256 v[P][NY];
};

template <int NY, class Idx>
inline void axpy_rows(const float* vals, const Idx* col, std::size_t len, const float* xt, std::size_t xs,
                      Acc<NY>& acc) {
    constexpr int P = Acc<NY>::P;
    std::size_t k = 0;
    for (; k + P <= len; k += P) {
        _mm_prefetch(reinterpret_cast<const char*>(vals + k) + kPrefetch, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(col + k) + kPrefetch, _MM_HINT_T0);
#pragma GCC unroll 2
        for (int p = 0; p < P; ++p) {
            const float* xr = xt + std::size_t(col[k + p]) * xs;
            const __m256 v = _mm256_set1_ps(vals[k + p]);
#pragma GCC unroll 8
            for (int i = 0; i < NY; ++i) acc.v[p][i] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr + 8 * i), acc.v[p][i]);
        }
    }
    for (; k < len; ++k) {
        const float* xr = xt + std::size_t(col[k]) * xs;
        const __m256 v = _mm256_set1_ps(vals[k]);
#pragma GCC unroll 8
        for (int i = 0; i < NY; ++i) acc.v[0][i] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr + 8 * i), acc.v[0][i]);
    }
}

// y[t0 + t, r] = (y if accumulating) + bias[r] + base[t] + acc[t] for the nt tokens of a chunk.
template <int NY>
inline void store_tokens(const Work& w, std::size_t r, std::size_t t0, std::size_t nt, const Acc<NY>& acc,
                         const float* base) {
    alignas(32) float out[8 * NY];
#pragma GCC unroll 8
    for (int i = 0; i < NY; ++i) {
        __m256 t = acc.v[0][i];
        if constexpr (Acc<NY>::P == 2) t = _mm256_add_ps(t, acc.v[1][i]);
        _mm256_store_ps(out + 8 * i, t);
    }
    const float b = w.bias ? w.bias[r] : 0.0f;
    for (std::size_t t = 0; t < nt; ++t) {
        float& y = w.y[(t0 + t) * w.rows + r];
        y = (w.accumulate ? y : 0.0f) + b + (base ? base[t] : 0.0f) + out[t];
    }
}

inline void store_one(const Work& w, std::size_t r, float s) {
    float& out = w.y[r];
    out = (w.accumulate ? out : 0.0f) + (w.bias ? w.bias[r] : 0.0f) + s;
}

// ---------------------------------------------------------------------------------------------- CSR

template <int NY, class Ptr, class Idx>
void csr_bn(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1) {
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t p0, p1;
            checked_range(a.row_ptr, r, a.nnz, "row_ptr", p0, p1);
            check_columns_v(a.col_idx, p0, p1, a.cols);
            Acc<NY> acc;
            for (auto& set : acc.v)
                for (auto& v : set) v = _mm256_setzero_ps();
            axpy_rows<NY>(a.values + p0, a.col_idx + p0, p1 - p0, xt, w.xs, acc);
            store_tokens<NY>(w, r, c * kChunk, w.chunk_tokens(c), acc, nullptr);
        }
    }
}

// ------------------------------------------------------------------------------------- CER and CSER

// Checks group_ptr[g0..g1] ascending and within nnz (vector compares of neighbours: ascending where
// max(p[g], p[g + 1]) == p[g + 1]); returns the row's entries [group_ptr[g0], group_ptr[g1]).
template <class Ptr>
inline void check_groups_v(const Ptr* group_ptr, std::size_t g0, std::size_t g1, std::size_t nnz, std::size_t& k0,
                           std::size_t& k1) {
    __m256i ok = _mm256_set1_epi32(-1);
    std::size_t g = g0;
    for (; g + 8 <= g1; g += 8) {
        const __m256i next = load_idx8(group_ptr + g + 1);
        ok = _mm256_and_si256(ok, _mm256_cmpeq_epi32(_mm256_max_epu32(load_idx8(group_ptr + g), next), next));
    }
    bool fine = _mm256_movemask_epi8(ok) == -1;
    for (; g < g1; ++g) fine &= group_ptr[g] <= group_ptr[g + 1];
    if (__builtin_expect(!fine || std::size_t(group_ptr[g1]) > nnz, 0)) {
        check_groups(group_ptr, g0, g1, nnz, k0, k1);  // finds the entry and throws
    }
    k0 = group_ptr[g0];
    k1 = group_ptr[g1];
}

// The groups of row r, checked: [g0, g1) and their entries [k0, k1) with valid columns.
template <class Ptr, class Idx>
inline void row_groups(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
                       const Idx* col_idx, std::size_t nnz, std::size_t cols, std::size_t r, std::size_t& g0,
                       std::size_t& g1, std::size_t& k0, std::size_t& k1) {
    checked_range(row_ptr, r, groups, "row_ptr", g0, g1);
    if (g1 - g0 > max_groups)
        fail_pointer("row_ptr", r + 1, g1, "gives a row more groups than there are explicit values after", g0);
    check_groups_v(group_ptr, g0, g1, nnz, k0, k1);
    check_columns_v(col_idx, k0, k1, cols);
}

// vals[k - k0] = mult(g) for the entries k of each group g in [g0, g1), by the same number of
// unconditional 8-wide stores per group (enough for the row's longest group), so that the store loop
// of every group runs the same count and its exit is predicted (what a group writes past its end,
// the next group overwrites).  vals must hold k1 - k0 + 8 * stores floats.
template <class Ptr>
inline std::size_t spread_stores(const Ptr* group_ptr, std::size_t g0, std::size_t g1) {
    std::size_t longest = 0;
    for (std::size_t g = g0; g < g1; ++g) longest = std::max<std::size_t>(longest, group_ptr[g + 1] - group_ptr[g]);
    return (longest + 7) / 8;
}

template <class Ptr, class Mult>
inline void spread_values(const Ptr* group_ptr, std::size_t g0, std::size_t g1, std::size_t k0, std::size_t stores,
                          const Mult& mult, float* vals) {
    for (std::size_t g = g0; g < g1; ++g) {
        const __m256 m = _mm256_set1_ps(mult(g, g0));
        float* v = vals + (std::size_t(group_ptr[g]) - k0);
        for (std::size_t i = 0; i < stores; ++i) _mm256_storeu_ps(v + 8 * i, m);
    }
}

// Groups of at least this many entries on average take grouped_dot_b1 at batch 1.  Measured on
// 4096^2 matrices at 90 % zeros: groups of ~200 and ~29 entries ran 1.3x and 1.1x faster than by
// spreading and gathering, groups of ~14 entries 1.5x slower.
constexpr std::size_t kLongGroups = 20;

template <int NY, class Ptr, class Idx, class Mult>
void grouped_rows(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
                  const Idx* col_idx, std::size_t nnz, std::size_t cols, float omega0, const Work& w, std::size_t r0,
                  std::size_t r1, const Mult& mult) {
    thread_local std::vector<float> scratch;
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        const std::size_t nt = w.chunk_tokens(c), t0 = c * kChunk;
        float base[kChunk];  // omega0 * sum(x) per token
        for (std::size_t t = 0; t < nt; ++t) base[t] = omega0 != 0.0f ? omega0 * w.sx[t0 + t] : 0.0f;
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t g0, g1, k0, k1;
            row_groups(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, r, g0, g1, k0, k1);
            mult.check(g0, g1);
            const std::size_t len = k1 - k0;
            if constexpr (NY == 0) {
                if (len >= kLongGroups * (g1 - g0)) {
                    store_one(w, r, base[0] + grouped_dot_b1(group_ptr, g0, g1, col_idx, mult, xt));
                } else {
                    const std::size_t stores = spread_stores(group_ptr, g0, g1);
                    if (scratch.size() < len + 8 * stores) scratch.resize(len + 8 * stores);
                    spread_values(group_ptr, g0, g1, k0, stores, mult, scratch.data());
                    store_one(w, r, base[0] + dot_b1(scratch.data(), col_idx + k0, len, xt));
                }
            } else {
                const std::size_t stores = spread_stores(group_ptr, g0, g1);
                if (scratch.size() < len + 8 * stores) scratch.resize(len + 8 * stores);
                spread_values(group_ptr, g0, g1, k0, stores, mult, scratch.data());
                Acc<NY> acc;
                for (auto& set : acc.v)
                    for (auto& v : set) v = _mm256_setzero_ps();
                axpy_rows<NY>(scratch.data(), col_idx + k0, len, xt, w.xs, acc);
                store_tokens<NY>(w, r, t0, nt, acc, base);
            }
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
        if (__builtin_expect(g1 > g0 && max_index(value_idx, g0, g1) >= num_values, 0))
            check_value_idx(value_idx, g0, g1, num_values);
    }
    inline float operator()(std::size_t g, std::size_t) const { return mult[value_idx[g]]; }
};

template <class Ptr, class Idx, class Mult>
void grouped(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
             const Idx* col_idx, std::size_t nnz, std::size_t cols, float omega0, const Work& w, std::size_t r0,
             std::size_t r1, const Mult& mult) {
    if (w.batch == 1)
        return grouped_rows<0>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
    switch (w.xs / 16) {
        case 1: return grouped_rows<2>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
        case 2: return grouped_rows<4>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
        case 3: return grouped_rows<6>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
        default: return grouped_rows<8>(row_ptr, group_ptr, groups, max_groups, col_idx, nnz, cols, omega0, w, r0, r1, mult);
    }
}

// ------------------------------------------------------------------------------------------- packed

// Decoders of one unit (16 rows x C columns): tables() makes the two table vectors from the 16- or
// 256-entry table, load() reads the unit's bytes, col(c, t0, t1, t256, lo, hi) gives the values of
// column c for rows 0-7 and 8-15.
struct NoTables {
    static void tables(const float*, __m256& t0, __m256& t1) { t0 = t1 = _mm256_setzero_ps(); }
};

struct Dec8Affine : NoTables {
    static constexpr int C = 1;
    static constexpr std::size_t UB = 16;
    __m256i v0, v1;
    inline void load(const uint8_t* u) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
        v0 = _mm256_cvtepi8_epi32(b);
        v1 = _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(b, b));
    }
    inline void col(int, __m256, __m256, const float*, __m256& lo, __m256& hi) const {
        lo = _mm256_cvtepi32_ps(v0);
        hi = _mm256_cvtepi32_ps(v1);
    }
};

// The 16 bytes of a unit as 32-bit lanes: v0 for rows 0-7, v1 for rows 8-15; t0, t1: table entries
// 0-7 and 8-15.
struct Unit16 {
    static constexpr std::size_t UB = 16;
    __m256i v0, v1;
    static void tables(const float* table, __m256& t0, __m256& t1) {
        t0 = _mm256_loadu_ps(table);
        t1 = _mm256_loadu_ps(table + 8);
    }
    inline void load(const uint8_t* u) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
        v0 = _mm256_cvtepu8_epi32(b);
        v1 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b));
    }
};

struct Dec8Table : Unit16 {
    static constexpr int C = 1;
    static void tables(const float*, __m256& t0, __m256& t1) { NoTables::tables(nullptr, t0, t1); }
    inline void col(int, __m256, __m256, const float* t256, __m256& lo, __m256& hi) const {
        lo = _mm256_i32gather_ps(t256, v0, 4);
        hi = _mm256_i32gather_ps(t256, v1, 4);
    }
};

// 16-entry lookup: vpermps reads index bits 0-2; bit 3 (moved to the sign) picks the upper table.
inline __m256 lookup16(__m256i idx, __m256 t0, __m256 t1) {
    const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, idx), _mm256_permutevar8x32_ps(t1, idx), sel);
}

struct Dec4 : Unit16 {
    static constexpr int C = 2;
    inline void col(int c, __m256 t0, __m256 t1, const float*, __m256& lo, __m256& hi) const {
        lo = lookup16(c ? _mm256_srli_epi32(v0, 4) : v0, t0, t1);
        hi = lookup16(c ? _mm256_srli_epi32(v1, 4) : v1, t0, t1);
    }
};

// Affine 4-bit indices: the index itself, converted (the driver applies scale and offset); no lookup.
struct Dec4Affine : Unit16 {
    static constexpr int C = 2;
    static void tables(const float*, __m256& t0, __m256& t1) { NoTables::tables(nullptr, t0, t1); }
    inline void col(int c, __m256, __m256, const float*, __m256& lo, __m256& hi) const {
        const __m256i m = _mm256_set1_epi32(15);
        lo = _mm256_cvtepi32_ps(c ? _mm256_srli_epi32(v0, 4) : _mm256_and_si256(v0, m));
        hi = _mm256_cvtepi32_ps(c ? _mm256_srli_epi32(v1, 4) : _mm256_and_si256(v1, m));
    }
};

struct Dec2 : Unit16 {
    static constexpr int C = 4;
    inline void col(int c, __m256 t0, __m256, const float*, __m256& lo, __m256& hi) const {
        // the table repeats every 4 entries, so the bits above an index do not matter
        lo = _mm256_permutevar8x32_ps(t0, _mm256_srli_epi32(v0, 2 * c));
        hi = _mm256_permutevar8x32_ps(t0, _mm256_srli_epi32(v1, 2 * c));
    }
};

// 3 bits: the low two bits pick an entry in t0 = entries 0-3 twice or t1 = entries 4-7 twice (so the
// bits above them do not matter), and the high bit, shifted to the sign, picks between the two.
struct Dec3 {
    static constexpr int C = 8;
    static constexpr std::size_t UB = 48;
    __m256i lo0[2], lo1[2], hi[2];
    static void tables(const float* table, __m256& t0, __m256& t1) {
        const __m256 t = _mm256_loadu_ps(table);
        t0 = _mm256_permute2f128_ps(t, t, 0x00);
        t1 = _mm256_permute2f128_ps(t, t, 0x11);
    }
    inline void load(const uint8_t* u) {
        for (int h = 0; h < 2; ++h) {
            lo0[h] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + 8 * h)));
            lo1[h] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + 16 + 8 * h)));
            hi[h] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + 32 + 8 * h)));
        }
    }
    inline __m256 one(int c, int h, __m256 t0, __m256 t1) const {
        const __m256i l = _mm256_srli_epi32(c < 4 ? lo0[h] : lo1[h], 2 * (c & 3));
        const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(hi[h], 31 - c));
        return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, l), _mm256_permutevar8x32_ps(t1, l), sel);
    }
    inline void col(int c, __m256 t0, __m256 t1, const float*, __m256& lo, __m256& hi_) const {
        lo = one(c, 0, t0, t1);
        hi_ = one(c, 1, t0, t1);
    }
};

constexpr int kMaxBlock = 4;  // tokens whose accumulators (2 vectors each) stay in registers

// out[t] (rows 0-7, 8-15) = sum over the panel's columns of decoded values * x^T[j, t], for TB tokens.
// With one token the columns alternate between two accumulator sets (four chains in flight).
template <class D, int TB>
__attribute__((noinline)) void panel_block(const uint8_t* pd, std::size_t units, __m256 t0, __m256 t1,
                                           const float* t256, const float* xt, std::size_t xs, __m256 (*out)[2]) {
    constexpr int S = TB == 1 ? 2 : 1;
    __m256 acc[S][TB][2];
    for (int s = 0; s < S; ++s)
        for (int t = 0; t < TB; ++t) acc[s][t][0] = acc[s][t][1] = _mm256_setzero_ps();
    // always_inline: GCC otherwise calls this per unit for the larger decoders, with the
    // accumulators spilled to memory (2.3x slower for 4-bit indices)
    auto unit = [&](std::size_t u, int parity) __attribute__((always_inline)) {
        D d;
        d.load(pd + u * D::UB);
        const float* xb = xt + u * D::C * xs;
#pragma GCC unroll 8
        for (int c = 0; c < D::C; ++c) {
            __m256 lo, hi;
            d.col(c, t0, t1, t256, lo, hi);
            const int s = (parity * D::C + c) % S;
            const float* xr = xb + c * xs;
#pragma GCC unroll 4
            for (int t = 0; t < TB; ++t) {
                const __m256 xv = _mm256_broadcast_ss(xr + t);
                acc[s][t][0] = _mm256_fmadd_ps(lo, xv, acc[s][t][0]);
                acc[s][t][1] = _mm256_fmadd_ps(hi, xv, acc[s][t][1]);
            }
        }
    };
    std::size_t u = 0;
    for (; u + 2 <= units; u += 2) {
        _mm_prefetch(reinterpret_cast<const char*>(pd + u * D::UB) + kPrefetch, _MM_HINT_T0);
        unit(u, 0);
        unit(u + 1, 1);
    }
    if (u < units) unit(u, 0);
    for (int t = 0; t < TB; ++t)
        for (int h = 0; h < 2; ++h) {
            __m256 v = acc[0][t][h];
            if constexpr (S == 2) v = _mm256_add_ps(v, acc[1][t][h]);
            out[t][h] = v;
        }
}

template <class D>
void run_block(int tb, const uint8_t* pd, std::size_t units, __m256 t0, __m256 t1, const float* t256,
               const float* xt, std::size_t xs, __m256 (*out)[2]) {
    switch (tb) {
        case 1: return panel_block<D, 1>(pd, units, t0, t1, t256, xt, xs, out);
        case 2: return panel_block<D, 2>(pd, units, t0, t1, t256, xt, xs, out);
        case 3: return panel_block<D, 3>(pd, units, t0, t1, t256, xt, xs, out);
        default: return panel_block<D, 4>(pd, units, t0, t1, t256, xt, xs, out);
    }
}

template <class D>
void panels(const PackedView& a, const float* table, const Work& w, std::size_t p0, std::size_t p1) {
    const std::size_t units = (a.cols + D::C - 1) / D::C;
    __m256 t0, t1;
    D::tables(table, t0, t1);
    const float* t256 = a.bits == 8 ? table : nullptr;
    const __m256 scale = _mm256_set1_ps(a.scale);
    __m256 out[kMaxBlock][2];
    for (std::size_t p = p0; p < p1; ++p) {
        const std::size_t r = p * kPanelRows, nrows = std::min(kPanelRows, a.rows - r);
        const __m256i m0 = lane_mask(std::min<std::size_t>(nrows, 8)), m1 = lane_mask(nrows > 8 ? nrows - 8 : 0);
        const uint8_t* pd = a.data + p * units * D::UB;
        __m256 bias[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        if (w.bias) {
            bias[0] = _mm256_maskload_ps(w.bias + r, m0);
            bias[1] = _mm256_maskload_ps(w.bias + r + 8, m1);
        }
        for (std::size_t c = 0; c < w.chunks; ++c) {
            const float* xt = w.chunk_xt(c);
            const std::size_t nt = w.chunk_tokens(c), tc = c * kChunk;
            for (std::size_t tb0 = 0; tb0 < nt; tb0 += kMaxBlock) {
                const std::size_t tb = std::min<std::size_t>(kMaxBlock, nt - tb0);
                run_block<D>(static_cast<int>(tb), pd, units, t0, t1, t256, xt + tb0, w.xs, out);
                for (std::size_t t = 0; t < tb; ++t) {
                    const std::size_t tok = tc + tb0 + t;
                    float* yp = w.y + tok * a.rows + r;
                    for (int h = 0; h < 2; ++h) {
                        __m256 v = out[t][h];
                        if (a.affine) {
                            const float off = a.offset != 0.0f ? a.offset * w.sx[tok] : 0.0f;
                            v = _mm256_fmadd_ps(v, scale, _mm256_set1_ps(off));
                        }
                        v = _mm256_add_ps(v, bias[h]);
                        const __m256i m = h ? m1 : m0;
                        if (w.accumulate) v = _mm256_add_ps(v, _mm256_maskload_ps(yp + 8 * h, m));
                        _mm256_maskstore_ps(yp + 8 * h, m, v);
                    }
                }
            }
        }
    }
}

}  // namespace

template <class Ptr, class Idx>
void csr_rows_avx2(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1) {
    if (w.batch == 1) {
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t p0, p1;
            checked_range(a.row_ptr, r, a.nnz, "row_ptr", p0, p1);
            check_columns_v(a.col_idx, p0, p1, a.cols);
            store_one(w, r, dot_b1(a.values + p0, a.col_idx + p0, p1 - p0, w.xt));
        }
        return;
    }
    switch (w.xs / 16) {
        case 1: return csr_bn<2>(a, w, r0, r1);
        case 2: return csr_bn<4>(a, w, r0, r1);
        case 3: return csr_bn<6>(a, w, r0, r1);
        default: return csr_bn<8>(a, w, r0, r1);
    }
}

template <class Ptr, class Idx>
void cer_rows_avx2(const CerView<Ptr, Idx>& a, const float* mult, float omega0, const Work& w, std::size_t r0,
                   std::size_t r1) {
    grouped(a.row_ptr, a.group_ptr, a.groups, a.num_omega - 1, a.col_idx, a.nnz, a.cols, omega0, w, r0, r1,
            CerMult{mult});
}

template <class Ptr, class Idx, class Vi>
void cser_rows_avx2(const CserView<Ptr, Idx, Vi>& a, const float* mult, const Work& w, std::size_t r0,
                    std::size_t r1) {
    grouped(a.row_ptr, a.group_ptr, a.groups, a.groups, a.col_idx, a.nnz, a.cols, a.omega0, w, r0, r1,
            CserMult<Vi>{a.value_idx, mult, a.num_values});
}

void packed_panels_avx2(const PackedView& a, const float* table, const Work& w, std::size_t p0, std::size_t p1) {
    switch (a.bits) {
        case 2: return panels<Dec2>(a, table, w, p0, p1);
        case 3: return panels<Dec3>(a, table, w, p0, p1);
        case 4: return a.affine ? panels<Dec4Affine>(a, table, w, p0, p1) : panels<Dec4>(a, table, w, p0, p1);
        default: return a.affine ? panels<Dec8Affine>(a, table, w, p0, p1) : panels<Dec8Table>(a, table, w, p0, p1);
    }
}

NNSQ_INSTANTIATE_ROW_KERNELS(avx2)

}  // namespace nnsqueeze::sparse::detail

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // NNSQ_HAVE_AVX2_KERNELS
