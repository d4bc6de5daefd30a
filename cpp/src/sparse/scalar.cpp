// Portable row kernels (any CPU): plain loops over the format arrays, every index checked.
#include <algorithm>

#include "common.hpp"

namespace nnsqueeze::sparse::detail {

namespace {

// y[t, r] = (y[t, r] if accumulating) + bias[r] + acc[t] for the tokens of chunk c.
inline void store_row(const Work& w, std::size_t c, std::size_t r, const float* acc) {
    const std::size_t nt = w.chunk_tokens(c), t0 = c * kChunk;
    const float b = w.bias ? w.bias[r] : 0.0f;
    for (std::size_t t = 0; t < nt; ++t) {
        float& out = w.y[(t0 + t) * w.rows + r];
        out = (w.accumulate ? out : 0.0f) + b + acc[t];
    }
}

// sum over col_idx[k0..k1) of x[j] (batch 1), four partial sums.
template <class Idx>
inline float sum_b1(const Idx* col_idx, std::size_t k0, std::size_t k1, const float* x) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        s0 += x[col_idx[k]];
        s1 += x[col_idx[k + 1]];
        s2 += x[col_idx[k + 2]];
        s3 += x[col_idx[k + 3]];
    }
    for (; k < k1; ++k) s0 += x[col_idx[k]];
    return (s0 + s1) + (s2 + s3);
}

// acc[t] += scale * sum over col_idx[k0..k1) of x^T[j, t]
template <class Idx>
inline void add_columns(const Idx* col_idx, std::size_t k0, std::size_t k1, const float* xt, std::size_t xs,
                        std::size_t nt, float scale, float* acc) {
    float s[kChunk] = {};
    for (std::size_t k = k0; k < k1; ++k) {
        const float* xr = xt + std::size_t(col_idx[k]) * xs;
        for (std::size_t t = 0; t < nt; ++t) s[t] += xr[t];
    }
    for (std::size_t t = 0; t < nt; ++t) acc[t] += scale * s[t];
}

// The groups of row r, checked: [g0, g1) and their entries [k0, k1) with valid columns.
template <class Ptr, class Idx>
inline void row_groups(const Ptr* row_ptr, const Ptr* group_ptr, std::size_t groups, std::size_t max_groups,
                       const Idx* col_idx, std::size_t nnz, std::size_t cols, std::size_t r, std::size_t& g0,
                       std::size_t& g1) {
    checked_range(row_ptr, r, groups, "row_ptr", g0, g1);
    if (g1 - g0 > max_groups)
        fail_pointer("row_ptr", r + 1, g1, "gives a row more groups than there are explicit values after", g0);
    std::size_t k0, k1;
    check_groups(group_ptr, g0, g1, nnz, k0, k1);
    check_columns(col_idx, k0, k1, cols);
}

}  // namespace

template <class Ptr, class Idx>
void csr_rows_scalar(const CsrView<Ptr, Idx>& a, const Work& w, std::size_t r0, std::size_t r1) {
    if (w.batch == 1) {
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t p0, p1;
            checked_range(a.row_ptr, r, a.nnz, "row_ptr", p0, p1);
            check_columns(a.col_idx, p0, p1, a.cols);
            float s0 = 0, s1 = 0;
            std::size_t k = p0;
            for (; k + 2 <= p1; k += 2) {
                s0 += a.values[k] * w.xt[a.col_idx[k]];
                s1 += a.values[k + 1] * w.xt[a.col_idx[k + 1]];
            }
            if (k < p1) s0 += a.values[k] * w.xt[a.col_idx[k]];
            const float acc = s0 + s1;
            store_row(w, 0, r, &acc);
        }
        return;
    }
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        const std::size_t nt = w.chunk_tokens(c);
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t p0, p1;
            checked_range(a.row_ptr, r, a.nnz, "row_ptr", p0, p1);
            check_columns(a.col_idx, p0, p1, a.cols);
            float acc[kChunk] = {};
            for (std::size_t k = p0; k < p1; ++k) {
                const float v = a.values[k];
                const float* xr = xt + std::size_t(a.col_idx[k]) * w.xs;
                for (std::size_t t = 0; t < nt; ++t) acc[t] += v * xr[t];
            }
            store_row(w, c, r, acc);
        }
    }
}

template <class Ptr, class Idx>
void cer_rows_scalar(const CerView<Ptr, Idx>& a, const float* mult, float omega0, const Work& w, std::size_t r0,
                     std::size_t r1) {
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        const std::size_t nt = w.chunk_tokens(c), t0 = c * kChunk;
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t g0, g1;
            row_groups(a.row_ptr, a.group_ptr, a.groups, a.num_omega - 1, a.col_idx, a.nnz, a.cols, r, g0, g1);
            float acc[kChunk] = {};
            if (omega0 != 0.0f)
                for (std::size_t t = 0; t < nt; ++t) acc[t] = omega0 * w.sx[t0 + t];
            for (std::size_t g = g0; g < g1; ++g) {
                if (w.batch == 1)
                    acc[0] += mult[g - g0] * sum_b1(a.col_idx, a.group_ptr[g], a.group_ptr[g + 1], xt);
                else
                    add_columns(a.col_idx, a.group_ptr[g], a.group_ptr[g + 1], xt, w.xs, nt, mult[g - g0], acc);
            }
            store_row(w, c, r, acc);
        }
    }
}

template <class Ptr, class Idx, class Vi>
void cser_rows_scalar(const CserView<Ptr, Idx, Vi>& a, const float* mult, const Work& w, std::size_t r0,
                      std::size_t r1) {
    for (std::size_t c = 0; c < w.chunks; ++c) {
        const float* xt = w.chunk_xt(c);
        const std::size_t nt = w.chunk_tokens(c), t0 = c * kChunk;
        for (std::size_t r = r0; r < r1; ++r) {
            std::size_t g0, g1;
            row_groups(a.row_ptr, a.group_ptr, a.groups, a.groups, a.col_idx, a.nnz, a.cols, r, g0, g1);
            check_value_idx(a.value_idx, g0, g1, a.num_values);
            float acc[kChunk] = {};
            if (a.omega0 != 0.0f)
                for (std::size_t t = 0; t < nt; ++t) acc[t] = a.omega0 * w.sx[t0 + t];
            for (std::size_t g = g0; g < g1; ++g) {
                const float m = mult[a.value_idx[g]];
                if (w.batch == 1)
                    acc[0] += m * sum_b1(a.col_idx, a.group_ptr[g], a.group_ptr[g + 1], xt);
                else
                    add_columns(a.col_idx, a.group_ptr[g], a.group_ptr[g + 1], xt, w.xs, nt, m, acc);
            }
            store_row(w, c, r, acc);
        }
    }
}

void packed_panels_scalar(const PackedView& a, const float* table, const Work& w, std::size_t p0, std::size_t p1) {
    const std::size_t uc = packed_unit_cols(a.bits), ub = packed_unit_bytes(a.bits);
    const std::size_t units = (a.cols + uc - 1) / uc;
    for (std::size_t p = p0; p < p1; ++p) {
        const std::size_t r = p * kPanelRows, nrows = std::min(kPanelRows, a.rows - r);
        const uint8_t* pd = a.data + p * units * ub;
        for (std::size_t c = 0; c < w.chunks; ++c) {
            const float* xt = w.chunk_xt(c);
            const std::size_t nt = w.chunk_tokens(c), t0 = c * kChunk;
            float acc[kPanelRows][kChunk] = {};
            for (std::size_t u = 0; u < units; ++u) {
                const uint8_t* unit = pd + u * ub;
                for (std::size_t cc = 0; cc < uc; ++cc) {
                    const float* xr = xt + (u * uc + cc) * w.xs;
                    for (std::size_t i = 0; i < kPanelRows; ++i) {
                        const unsigned k = packed_index(unit, a.bits, i, cc);
                        const float v = a.affine && a.bits == 8 ? static_cast<float>(static_cast<int8_t>(k)) : table[k];
                        for (std::size_t t = 0; t < nt; ++t) acc[i][t] += v * xr[t];
                    }
                }
            }
            for (std::size_t i = 0; i < nrows; ++i) {
                float out[kChunk];
                for (std::size_t t = 0; t < nt; ++t)
                    out[t] = a.affine ? a.scale * acc[i][t] + (a.offset != 0.0f ? a.offset * w.sx[t0 + t] : 0.0f)
                                      : acc[i][t];
                store_row(w, c, r + i, out);
            }
        }
    }
}

NNSQ_INSTANTIATE_ROW_KERNELS(scalar)

}  // namespace nnsqueeze::sparse::detail
