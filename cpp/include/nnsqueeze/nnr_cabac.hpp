// Decoding of the CABAC payload of one MPEG NNR (ISO/IEC 15938-17) tensor, as NNCodec 2.x writes it.
//
// The payload of an NNR compressed data unit is one arithmetic-coded stream per unit: the tensor's QP
// offset (bypass bins), the row-skip flags, the choice of estimator parameters for each context ("param
// opt"), then the quantization levels in scan order, then a terminating bin.  This decoder follows the
// syntax and the decoding process: a 9-bit-range binary arithmetic decoder with LPS ranges from a table,
// dual-state probability estimators, sig/sign/"greater than x" flags with neighbour-selected contexts,
// an Exp-Golomb remainder with context-coded prefix, dependent quantization's 8-state machine, block
// scans with entry points.  docs/nnr.md lists what is covered.
//
// Every read is bounded: past the end of the payload the decoder reads zeros and reports the overrun;
// the caller bounds the element count before allocating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nnsqueeze::nnr {

struct TensorSyntax {
    std::size_t rows = 0;        // tensor_dimensions[0] (the element count for a 1-D tensor)
    std::size_t cols = 1;        // product of the other dimensions (1 for a 1-D tensor)
    int qp_offset_bits = 0;      // 6 + qp_density when the payload starts with the QP offset, else 0
    bool dependent = false;      // dq_flag
    int scan_order = 0;          // 0: row by row; 1..4: blocks of 8 << (scan_order - 1) squared
    int profile = 0;             // general_profile_idc
    bool parent_node_id_present = false;
    uint32_t codebook_size = 0;  // 0: no codebook
    uint32_t codebook_zero_offset = 0;
    uint32_t unary_length = 11;  // cabac_unary_length_minus1 + 1: number of "greater than x" flags
    // Temporal context adaptation: the co-located levels of the tensor's previous update (rows * cols,
    // as this decoder returned them), which select the contexts of each level; null without.
    const int32_t* previous_update = nullptr;
    // Entry points of block rows 1.., as signalled (bit offset relative to the previous block row,
    // the arithmetic decoder's value register >> 7, the dependent-quantization state).
    std::vector<uint64_t> entry_point_offsets;
    std::vector<uint32_t> entry_point_values;
    std::vector<uint32_t> entry_point_states;
};

struct TensorResult {
    int32_t qp_offset = 0;
    std::size_t bytes_read = 0;  // payload bytes up to and including the terminating bin's byte
    bool row_skipping = false;   // the payload carries row-skip flags
    std::size_t skipped_rows = 0;
    int tuned_contexts = 0;      // contexts given non-default estimator parameters ("param opt")
};

// Decodes rows * cols levels into `levels` (zero-initialised by the callee), in row-major order of the
// tensor.  For dependent quantization the levels are reconstruction indices (the step multiples).
// Throws BitstreamError for a malformed or truncated payload (or one with bytes after its end) and
// std::invalid_argument for syntax
// values outside what the decoder supports.
TensorResult decode_tensor(const uint8_t* data, std::size_t size, const TensorSyntax& syntax, int32_t* levels);

// Encodes rows * cols levels (row-major) as the payload of one data unit with scan_order 0.  For
// dependent quantization the levels are reconstruction indices and each must suit the quantizer of
// its state (even where state & 1 is 0, odd or zero where it is 1), as a trellis search leaves them.
// The payload holds the QP offset (when qp_offset_bits > 0),
// row-skip flags for all-zero rows (profile 1), the estimator choices (chosen by a pass that codes
// the levels with every parameter set when `choose_estimators`, else all default), the levels and the
// terminating bin.  Throws std::invalid_argument for levels outside +-(2^29 - 1), a QP offset that
// does not fit, or a syntax this encoder does not write (codebooks, block scans, profile 0).
std::vector<uint8_t> encode_tensor(const int32_t* levels, const TensorSyntax& syntax, int32_t qp_offset,
                                   bool choose_estimators);

// NNR dependent quantization of rows x cols weights in row-major order: a Viterbi search over the
// 8 quantizer states for the reconstruction indices (multiples of `step`) minimising
//     sum (w_i / step - q_i)^2 + lambda * bits(k_i),  bits(k) = 1 for k = 0, else 2 + 2 log2(|k| + 1)
// (a proxy of the coder's rate).  Each row ends in its best state, so memory stays O(cols).  The result
// suits encode_tensor with `dependent`.  Throws std::invalid_argument for non-finite weights or levels
// beyond +-(2^29 - 1).
void dependent_quantize(const float* weights, std::size_t rows, std::size_t cols, double step, double lambda,
                        int32_t* levels);

// Number of block rows of a rows x cols tensor in `scan_order` (0 for a row-by-row scan).
std::size_t block_rows(std::size_t rows, std::size_t cols, int scan_order);

}  // namespace nnsqueeze::nnr
