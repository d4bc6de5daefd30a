// Entry points of the sparse kernels: checks that do not depend on the data, operand preparation
// (X^T chunks, per-token sums), instruction-set choice and the row-parallel split.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "common.hpp"

namespace nnsqueeze::sparse {

namespace {

bool detect(Isa isa) {
#if defined(NNSQ_HAVE_AVX2_KERNELS)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == Isa::avx2) return avx2;
    if (isa == Isa::avx512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    return isa == Isa::scalar;
}

const bool kHasAvx2 = detect(Isa::avx2);
const bool kHasAvx512 = detect(Isa::avx512);
std::atomic<int> g_isa{static_cast<int>(kHasAvx512 ? Isa::avx512 : kHasAvx2 ? Isa::avx2 : Isa::scalar)};

Isa current() { return static_cast<Isa>(g_isa.load(std::memory_order_relaxed)); }
bool use_avx512() { return current() == Isa::avx512; }

// Runs `rows_kernel(isa)` on the instruction set chosen now: one switch for every format.
template <class Scalar, class Avx2, class Avx512>
inline void dispatch(Isa isa, Scalar&& scalar, Avx2&& avx2, Avx512&& avx512) {
#if defined(NNSQ_HAVE_AVX2_KERNELS)
    if (isa == Isa::avx512) return avx512();
    if (isa == Isa::avx2) return avx2();
#else
    (void)isa;
    (void)avx2;
    (void)avx512;
#endif
    scalar();
}

constexpr std::size_t kMaxRows = std::size_t(1) << 27;  // scatter offsets (16 * rows) fit int32
constexpr std::size_t kMaxCols = std::size_t(1) << 31;  // gathers use signed 32-bit indices

void check_operands(std::size_t rows, std::size_t cols, const Operands& op) {
    if (rows >= kMaxRows || cols >= kMaxCols)
        throw std::invalid_argument("matrix too large for the sparse kernels (rows < 2^27, cols < 2^31)");
    if (op.batch > 0 && ((cols > 0 && op.x == nullptr) || (rows > 0 && op.y == nullptr)))
        throw std::invalid_argument("missing x or y");
}

detail::Work base_work(std::size_t rows, std::size_t cols, const Operands& op) {
    detail::Work w;
    w.rows = rows;
    w.cols = cols;
    w.batch = op.batch;
    w.x = op.x;
    w.y = op.y;
    w.bias = op.bias;
    w.accumulate = op.accumulate;
    return w;
}

// y = bias (or unchanged when accumulating) for matrices without columns.
void no_columns(const detail::Work& w) {
    if (w.accumulate && w.bias == nullptr) return;
    for (std::size_t t = 0; t < w.batch; ++t) {
        float* y = w.y + t * w.rows;
        for (std::size_t r = 0; r < w.rows; ++r) {
            const float b = w.bias ? w.bias[r] : 0.0f;
            y[r] = w.accumulate ? y[r] + b : b;
        }
    }
}

}  // namespace

bool isa_available(Isa isa) {
    return isa == Isa::scalar || (isa == Isa::avx2 && kHasAvx2) || (isa == Isa::avx512 && kHasAvx512);
}
Isa active_isa() { return current(); }
void set_isa(Isa isa) {
    if (!isa_available(isa)) throw std::invalid_argument(std::string("instruction set not available: ") + isa_name(isa));
    g_isa.store(static_cast<int>(isa));
}
const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::avx512: return "avx512";
        case Isa::avx2: return "avx2";
        default: return "scalar";
    }
}

std::size_t packed_unit_cols(int bits) {
    switch (bits) {
        case 2: return 4;
        case 3: return 8;
        case 4: return 2;
        case 8: return 1;
        default: throw FormatError("packed codebook indices must have 2, 3, 4 or 8 bits");
    }
}

std::size_t packed_unit_bytes(int bits) { return bits == 3 ? 48 : 16; }

std::size_t packed_data_bytes(std::size_t rows, std::size_t cols, int bits) {
    const std::size_t uc = packed_unit_cols(bits);
    const std::size_t panels = (rows + kPanelRows - 1) / kPanelRows;
    const std::size_t units = (cols + uc - 1) / uc;
    return panels * units * packed_unit_bytes(bits);
}

namespace detail {

void prepare(Work& w, std::size_t cols_pad, bool want_sums, std::vector<float>& xt_buf,
             std::vector<float>& sx_buf) {
    w.cols_pad = cols_pad;
    if (w.batch == 1) {
        w.xs = 1;
        w.chunks = 1;
        if (cols_pad == w.cols) {
            w.xt = w.x;
        } else {
            xt_buf.assign(cols_pad, 0.0f);
            if (w.cols) std::memcpy(xt_buf.data(), w.x, w.cols * sizeof(float));
            w.xt = xt_buf.data();
        }
    } else {
        w.xs = std::min(kChunk, (w.batch + 15) / 16 * 16);
        w.chunks = (w.batch + kChunk - 1) / kChunk;
        // 64-byte aligned, so that a token vector of X^T is one cache line (malloc aligns to 16).
        xt_buf.resize(w.chunks * cols_pad * w.xs + 16);
        float* base = xt_buf.data();
        base += (16 - (reinterpret_cast<std::uintptr_t>(base) / sizeof(float)) % 16) % 16;
        // Transposed in blocks of 16 columns: the 16 destination rows stay in L1 while the tokens
        // stream in, and every source row is read sequentially.
        constexpr std::size_t kBlock = 16;
        for (std::size_t c = 0; c < w.chunks; ++c) {
            const std::size_t t0 = c * kChunk, nt = std::min(kChunk, w.batch - t0);
            float* chunk = base + c * cols_pad * w.xs;
            // 16 x 16 AVX-512 tiles for whole groups of 16 columns (tokens past the batch read as 0);
            // plain loops for the rest
            std::size_t tiled = 0;
#if defined(NNSQ_HAVE_AVX512_KERNELS)
            if (use_avx512()) {
                tiled = w.cols / 16 * 16;
                for (std::size_t t = 0; t < w.xs; t += 16) {
                    const std::size_t rows = nt > t ? std::min<std::size_t>(16, nt - t) : 0;
                    const float* src = w.x + (t0 + std::min(t, nt)) * w.cols;
                    detail::transpose16_avx512(src, w.cols, rows, tiled, chunk + t, w.xs);
                }
            }
#endif
            for (std::size_t j0 = tiled; j0 < w.cols; j0 += kBlock) {
                const std::size_t j1 = std::min(w.cols, j0 + kBlock);
                for (std::size_t t = 0; t < nt; ++t) {
                    const float* src = w.x + (t0 + t) * w.cols;
                    for (std::size_t j = j0; j < j1; ++j) chunk[j * w.xs + t] = src[j];
                }
                for (std::size_t j = j0; j < j1; ++j)  // tokens past the batch: zero
                    std::fill(chunk + j * w.xs + nt, chunk + (j + 1) * w.xs, 0.0f);
            }
            std::fill(chunk + w.cols * w.xs, chunk + cols_pad * w.xs, 0.0f);  // columns past cols
        }
        w.xt = base;
    }
    if (want_sums) {
        sx_buf.assign(w.batch, 0.0f);
        for (std::size_t t = 0; t < w.batch; ++t) {
            const float* src = w.x + t * w.cols;
            double s = 0;
            for (std::size_t j = 0; j < w.cols; ++j) s += src[j];
            sx_buf[t] = static_cast<float>(s);
        }
        w.sx = sx_buf.data();
    }
}

void fail_pointer(const char* array, std::size_t i, uint64_t value, const char* rule, uint64_t limit) {
    throw FormatError(std::string(array) + "[" + std::to_string(i) + "] = " + std::to_string(value) + " " + rule +
                      " " + std::to_string(limit));
}

void fail_index(const char* array, std::size_t i, uint64_t value, const char* what, uint64_t limit) {
    throw FormatError(std::string(array) + "[" + std::to_string(i) + "] = " + std::to_string(value) +
                      " is out of range for " + std::to_string(limit) + " " + what);
}

void table16(const PackedView& a, float out[16]) {
    const std::size_t k = std::size_t(1) << (a.bits == 8 ? 4 : a.bits);
    for (std::size_t i = 0; i < 16; ++i) {
        const std::size_t j = i % k;
        out[i] = j < a.table_size ? a.table[j] : 0.0f;
    }
}

void table256(const PackedView& a, float out[256]) {
    for (std::size_t i = 0; i < 256; ++i) out[i] = i < a.table_size ? a.table[i] : 0.0f;
}

}  // namespace detail

template <class Ptr, class Idx>
void csr_matmul(const CsrView<Ptr, Idx>& a, const Operands& op) {
    check_operands(a.rows, a.cols, op);
    if (op.batch == 0 || a.rows == 0) return;
    detail::Work w = base_work(a.rows, a.cols, op);
    if (a.cols == 0) return no_columns(w);
    thread_local std::vector<float> xt, sx;
    detail::prepare(w, a.cols, false, xt, sx);
    const Isa isa = current();
    const std::size_t per_row = (a.nnz / a.rows + 1) * op.batch;
    parallel_ranges(a.rows, op.threads, per_row, [&](std::size_t b, std::size_t e) {
        dispatch(
            isa, [&] { detail::csr_rows_scalar(a, w, b, e); }, [&] { detail::csr_rows_avx2(a, w, b, e); },
            [&] { detail::csr_rows_avx512(a, w, b, e); });
    });
}

template <class Ptr, class Idx>
void cer_matmul(const CerView<Ptr, Idx>& a, const Operands& op) {
    check_operands(a.rows, a.cols, op);
    if (a.num_omega == 0) throw FormatError("omega is empty: it must hold at least the implicit value omega[0]");
    if (op.batch == 0 || a.rows == 0) return;
    detail::Work w = base_work(a.rows, a.cols, op);
    const float omega0 = a.omega[0];
    // Group t of a row multiplies its sum by omega[t + 1] - omega0; omega0 * sum(x) is added once.
    std::vector<float> mult(a.num_omega - 1);
    for (std::size_t t = 0; t + 1 < a.num_omega; ++t) mult[t] = a.omega[t + 1] - omega0;
    thread_local std::vector<float> xt, sx;
    detail::prepare(w, a.cols, omega0 != 0.0f && a.cols > 0, xt, sx);
    const Isa isa = current();
    const std::size_t per_row = (a.nnz / a.rows + 1) * op.batch;
    parallel_ranges(a.rows, op.threads, per_row, [&](std::size_t b, std::size_t e) {
        dispatch(
            isa, [&] { detail::cer_rows_scalar(a, mult.data(), omega0, w, b, e); },
            [&] { detail::cer_rows_avx2(a, mult.data(), omega0, w, b, e); },
            [&] { detail::cer_rows_avx512(a, mult.data(), omega0, w, b, e); });
    });
}

template <class Ptr, class Idx, class Vi>
void cser_matmul(const CserView<Ptr, Idx, Vi>& a, const Operands& op) {
    check_operands(a.rows, a.cols, op);
    if (op.batch == 0 || a.rows == 0) return;
    detail::Work w = base_work(a.rows, a.cols, op);
    std::vector<float> mult(a.num_values);
    for (std::size_t k = 0; k < a.num_values; ++k) mult[k] = a.values[k] - a.omega0;
    thread_local std::vector<float> xt, sx;
    detail::prepare(w, a.cols, a.omega0 != 0.0f && a.cols > 0, xt, sx);
    const Isa isa = current();
    const std::size_t per_row = (a.nnz / a.rows + 1) * op.batch;
    parallel_ranges(a.rows, op.threads, per_row, [&](std::size_t b, std::size_t e) {
        dispatch(
            isa, [&] { detail::cser_rows_scalar(a, mult.data(), w, b, e); },
            [&] { detail::cser_rows_avx2(a, mult.data(), w, b, e); },
            [&] { detail::cser_rows_avx512(a, mult.data(), w, b, e); });
    });
}

void packed_matmul(const PackedView& a, const Operands& op) {
    check_operands(a.rows, a.cols, op);
    const std::size_t need = packed_data_bytes(a.rows, a.cols, a.bits);  // also checks bits
    if (a.data_bytes != need)
        throw FormatError("packed data holds " + std::to_string(a.data_bytes) + " bytes; a " + std::to_string(a.rows) +
                          " x " + std::to_string(a.cols) + " matrix with " + std::to_string(a.bits) +
                          "-bit indices needs " + std::to_string(need));
    if (a.table_size == 0) throw FormatError("the value table is empty");
    if (a.table_size > (std::size_t(1) << a.bits))
        throw FormatError("the value table has more entries than " + std::to_string(a.bits) + "-bit indices address");
    if (a.affine && a.bits != 8 && a.bits != 4) throw FormatError("affine decoding needs 4- or 8-bit indices");
    if (op.batch == 0 || a.rows == 0) return;
    detail::Work w = base_work(a.rows, a.cols, op);
    if (a.cols == 0) return no_columns(w);
    const std::size_t uc = packed_unit_cols(a.bits);
    const std::size_t units = (a.cols + uc - 1) / uc;
    thread_local std::vector<float> xt, sx;
    detail::prepare(w, units * uc, a.affine && a.offset != 0.0f, xt, sx);
    alignas(64) float tab[256];
    if (a.bits == 8)
        detail::table256(a, tab);
    else if (a.affine)  // 4-bit affine: the paths that look values up read the index itself
        for (int k = 0; k < 16; ++k) tab[k] = static_cast<float>(k);
    else
        detail::table16(a, tab);
    const Isa isa = current();
    const std::size_t panels = (a.rows + kPanelRows - 1) / kPanelRows;
    parallel_ranges(panels, op.threads, kPanelRows * a.cols * op.batch, [&](std::size_t b, std::size_t e) {
        dispatch(
            isa, [&] { detail::packed_panels_scalar(a, tab, w, b, e); },
            [&] { detail::packed_panels_avx2(a, tab, w, b, e); },
            [&] { detail::packed_panels_avx512(a, tab, w, b, e); });
    });
    if (!a.affine) return;
    // The corrections, on this thread (there are few): y[t, row] += value * x[t, col].
    for (std::size_t i = 0; i < a.corr_count; ++i) {
        const std::size_t r = a.corr_rows[i], c = a.corr_cols[i];
        if (r >= a.rows) detail::fail_index("corr_rows", i, r, "rows", a.rows);
        if (c >= a.cols) detail::fail_index("corr_cols", i, c, "columns", a.cols);
        const float v = a.corr_values[i];
        for (std::size_t t = 0; t < op.batch; ++t) op.y[t * a.rows + r] += v * op.x[t * a.cols + c];
    }
}

#define NNSQ_PI(P, I)                                                      \
    template void csr_matmul<P, I>(const CsrView<P, I>&, const Operands&); \
    template void cer_matmul<P, I>(const CerView<P, I>&, const Operands&); \
    template void cser_matmul<P, I, uint8_t>(const CserView<P, I, uint8_t>&, const Operands&); \
    template void cser_matmul<P, I, uint16_t>(const CserView<P, I, uint16_t>&, const Operands&);
#define NNSQ_P(P) NNSQ_PI(P, uint8_t) NNSQ_PI(P, uint16_t) NNSQ_PI(P, uint32_t)
NNSQ_P(uint8_t)
NNSQ_P(uint16_t)
NNSQ_P(uint32_t)
#undef NNSQ_P
#undef NNSQ_PI

}  // namespace nnsqueeze::sparse
