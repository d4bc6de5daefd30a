// Matrix products in the inference formats of nnsqueeze.sparse: CSR, CER, CSER and packed codebooks.
//
// Every kernel computes Y = X W^T (+ bias) for a weight matrix W of shape (rows, cols) held in one of
// the formats below, X of shape (batch, cols) and Y of shape (batch, rows), both row-major float32:
// the layout of torch.nn.functional.linear.  Formats (Wiedemann et al., "Compact and computationally
// efficient representation of deep neural networks", TNNLS 2019):
//
//   CSR   row_ptr (rows + 1) -> col_idx, values (nnz)
//   CER   row_ptr (rows + 1) -> group_ptr (groups + 1) -> col_idx (nnz); the t-th group of a row holds
//         omega[t + 1]; omega[0] is implicit (usually 0, else  y += omega[0] * sum(x))
//   CSER  as CER, but each group names its value: values[value_idx[g]]; omega0 is implicit
//   packed codebook: 2/3/4/8-bit indices into a table of values, in panels of 16 rows (see PackedView)
//
// The kernels never read out of bounds, whatever the arrays hold: each pointer is checked against the
// array it points into as it is read, column indices are compared with cols before x is read, value
// indices with the table size.  A malformed array throws FormatError (after all threads have stopped).
// Pure C++: no Python headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace nnsqueeze::sparse {

class FormatError : public std::invalid_argument {
   public:
    using std::invalid_argument::invalid_argument;
};

// Instruction sets the kernels are compiled for; the best one the CPU has is chosen at run time.
// avx2 means AVX2 + FMA; avx512 means AVX-512 F/BW/VL/DQ.
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

bool isa_available(Isa isa);
Isa active_isa();
// Forces an instruction set (tests run the portable kernels this way); throws if unavailable.
void set_isa(Isa isa);
const char* isa_name(Isa isa);

// The dense operands of one product.  x: (batch, cols), y: (batch, rows), bias: (rows) or null.
// With accumulate, y += X W^T (+ bias) instead of y = ....  threads <= 1 runs on the calling thread.
struct Operands {
    const float* x = nullptr;
    float* y = nullptr;
    std::size_t batch = 0;
    const float* bias = nullptr;
    bool accumulate = false;
    int threads = 1;
};

template <class Ptr, class Idx>
struct CsrView {
    std::size_t rows = 0, cols = 0;
    const Ptr* row_ptr = nullptr;  // rows + 1
    const Idx* col_idx = nullptr;  // nnz
    const float* values = nullptr; // nnz
    std::size_t nnz = 0;
};

template <class Ptr, class Idx>
struct CerView {
    std::size_t rows = 0, cols = 0;
    const Ptr* row_ptr = nullptr;    // rows + 1, into groups
    const Ptr* group_ptr = nullptr;  // groups + 1, into col_idx
    std::size_t groups = 0;
    const Idx* col_idx = nullptr;    // nnz
    std::size_t nnz = 0;
    const float* omega = nullptr;    // num_omega >= 1 values, omega[0] implicit
    std::size_t num_omega = 0;
};

template <class Ptr, class Idx, class Vi>
struct CserView {
    std::size_t rows = 0, cols = 0;
    const Ptr* row_ptr = nullptr;    // rows + 1, into groups
    const Ptr* group_ptr = nullptr;  // groups + 1, into col_idx
    const Vi* value_idx = nullptr;   // groups, into values
    std::size_t groups = 0;
    const Idx* col_idx = nullptr;    // nnz
    std::size_t nnz = 0;
    const float* values = nullptr;   // num_values
    std::size_t num_values = 0;
    float omega0 = 0.0f;             // the implicit value
};

// Packed codebook indices in panels of 16 rows (the last panel padded with index 0).  A panel is a run
// of units; a unit covers the 16 rows and kPackedUnitCols[bits] consecutive columns (the last unit
// padded with index 0) in kPackedUnitBytes[bits] bytes; byte i of a unit belongs to row i of the panel:
//   8 bits: 1 column; byte i = index
//   4 bits: 2 columns; byte i = idx(c0) | idx(c1) << 4
//   2 bits: 4 columns; byte i = sum_s idx(c_s) << 2s
//   3 bits: 8 columns in 48 bytes; bytes [0, 16) hold the low 2 bits of c0..c3 as in the 2-bit layout,
//           bytes [16, 32) those of c4..c7, byte 32 + i = sum_c ((idx(c) >> 2) & 1) << c
// The value of index k is table[k] (k >= table_size reads 0).  With affine (4- or 8-bit indices), the
// kernel uses instead value(k) = offset + scale * int8(k) for 8-bit and offset + scale * k for 4-bit
// indices (the table must agree up to float rounding, which the caller checks) and adds the
// corrections: W[row, col] += value for each triplet.
struct PackedView {
    std::size_t rows = 0, cols = 0;
    int bits = 8;
    const uint8_t* data = nullptr;
    std::size_t data_bytes = 0;
    const float* table = nullptr;
    std::size_t table_size = 0;
    bool affine = false;
    float scale = 1.0f, offset = 0.0f;
    const uint32_t* corr_rows = nullptr;  // the corrections: W[corr_rows[i], corr_cols[i]] += corr_values[i]
    const uint32_t* corr_cols = nullptr;
    const float* corr_values = nullptr;
    std::size_t corr_count = 0;
};

constexpr std::size_t kPanelRows = 16;
std::size_t packed_unit_cols(int bits);   // columns per unit (throws for unsupported bits)
std::size_t packed_unit_bytes(int bits);  // bytes per unit
std::size_t packed_data_bytes(std::size_t rows, std::size_t cols, int bits);

template <class Ptr, class Idx>
void csr_matmul(const CsrView<Ptr, Idx>& a, const Operands& op);

template <class Ptr, class Idx>
void cer_matmul(const CerView<Ptr, Idx>& a, const Operands& op);

template <class Ptr, class Idx, class Vi>
void cser_matmul(const CserView<Ptr, Idx, Vi>& a, const Operands& op);

void packed_matmul(const PackedView& a, const Operands& op);

}  // namespace nnsqueeze::sparse
