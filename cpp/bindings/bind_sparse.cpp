// nnsqueeze._core sparse kernels.  Each format has a factory (`csr_kernel`, ...) that takes the
// matrix's shape, its arrays and its scalars, checks their dtypes and lengths, picks the C++ view type
// for the index dtypes and returns a `Kernel`: one handle type for every format, holding the arrays
// (zero-copy; they stay alive as long as the handle) and multiplying with the GIL released.  The
// contents of the arrays are checked by the kernels as they read them.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "nnsqueeze/sparse/kernels.hpp"

namespace nb = nanobind;
using namespace nb::literals;
namespace sp = nnsqueeze::sparse;

namespace {

using Index = nb::ndarray<nb::ro, nb::ndim<1>, nb::c_contig, nb::device::cpu>;  // uint8/16/32
using Floats = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Bytes = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Input = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Output = nb::ndarray<float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

[[noreturn]] void fail(const std::string& msg) { throw sp::FormatError(msg); }

void expect_length(const char* name, std::size_t got, std::size_t want) {
    if (got != want)
        fail(std::string(name) + " has " + std::to_string(got) + " entries, expected " + std::to_string(want));
}

template <class F>
void with_uint(const Index& a, const char* name, F&& f) {
    if (a.dtype() == nb::dtype<uint8_t>()) return f(static_cast<const uint8_t*>(a.data()));
    if (a.dtype() == nb::dtype<uint16_t>()) return f(static_cast<const uint16_t*>(a.data()));
    if (a.dtype() == nb::dtype<uint32_t>()) return f(static_cast<const uint32_t*>(a.data()));
    fail(std::string(name) + " must be uint8, uint16 or uint32");
}

template <class T>
const T* same_dtype(const Index& a, const char* name, const Index& like, const char* like_name) {
    if (a.dtype() != like.dtype()) fail(std::string(name) + " must have the dtype of " + like_name);
    return static_cast<const T*>(a.data());
}

template <class P>
using Elem = std::remove_const_t<std::remove_pointer_t<P>>;

// A weight matrix in one format, bound to its arrays.
class Kernel {
   public:
    using Run = std::function<void(const sp::Operands&)>;

    // `run` multiplies with the matrix; it captures the arrays, which keeps them alive.
    Kernel(std::string format, std::size_t rows, std::size_t cols, Run run)
        : format_(std::move(format)), rows_(rows), cols_(cols), run_(std::move(run)) {}

    void matmul(const Input& x, Output& out, const std::optional<Floats>& bias, bool accumulate, int threads) const {
        if (x.shape(1) != cols_)
            throw std::invalid_argument("x has " + std::to_string(x.shape(1)) + " columns; the matrix has " +
                                        std::to_string(cols_));
        if (out.shape(0) != x.shape(0) || out.shape(1) != rows_)
            throw std::invalid_argument("out must have shape (batch, rows) = (" + std::to_string(x.shape(0)) +
                                        ", " + std::to_string(rows_) + ")");
        if (bias && bias->shape(0) != rows_)
            throw std::invalid_argument("bias has " + std::to_string(bias->shape(0)) + " entries, expected " +
                                        std::to_string(rows_));
        sp::Operands op;
        op.x = x.data();
        op.y = out.data();
        op.batch = x.shape(0);
        op.bias = bias ? bias->data() : nullptr;
        op.accumulate = accumulate;
        op.threads = threads;
        nb::gil_scoped_release release;
        run_(op);
    }

    const std::string& format() const { return format_; }
    std::size_t rows() const { return rows_; }
    std::size_t cols() const { return cols_; }

   private:
    std::string format_;
    std::size_t rows_, cols_;
    Run run_;
};

Kernel csr_kernel(std::size_t rows, std::size_t cols, const Index& row_ptr, const Index& col_idx,
                  const Floats& values) {
    expect_length("row_ptr", row_ptr.shape(0), rows + 1);
    expect_length("values", values.shape(0), col_idx.shape(0));
    Kernel::Run run;
    with_uint(row_ptr, "row_ptr", [&](auto rp) {
        with_uint(col_idx, "col_idx", [&](auto ci) {
            sp::CsrView<Elem<decltype(rp)>, Elem<decltype(ci)>> a{rows, cols, rp, ci, values.data(),
                                                                   col_idx.shape(0)};
            run = [a, row_ptr, col_idx, values](const sp::Operands& op) { sp::csr_matmul(a, op); };
        });
    });
    return Kernel("csr", rows, cols, std::move(run));
}

Kernel cer_kernel(std::size_t rows, std::size_t cols, const Index& row_ptr, const Index& group_ptr,
                  const Index& col_idx, const Floats& omega) {
    expect_length("row_ptr", row_ptr.shape(0), rows + 1);
    if (group_ptr.shape(0) == 0) fail("group_ptr is empty; it needs at least one entry");
    Kernel::Run run;
    with_uint(row_ptr, "row_ptr", [&](auto rp) {
        using P = Elem<decltype(rp)>;
        const P* gp = same_dtype<P>(group_ptr, "group_ptr", row_ptr, "row_ptr");
        with_uint(col_idx, "col_idx", [&](auto ci) {
            sp::CerView<P, Elem<decltype(ci)>> a{rows, cols, rp, gp, group_ptr.shape(0) - 1, ci, col_idx.shape(0),
                                                 omega.data(), omega.shape(0)};
            run = [a, row_ptr, group_ptr, col_idx, omega](const sp::Operands& op) { sp::cer_matmul(a, op); };
        });
    });
    return Kernel("cer", rows, cols, std::move(run));
}

Kernel cser_kernel(std::size_t rows, std::size_t cols, const Index& row_ptr, const Index& group_ptr,
                   const Index& value_idx, const Index& col_idx, const Floats& values, float omega0) {
    expect_length("row_ptr", row_ptr.shape(0), rows + 1);
    if (group_ptr.shape(0) == 0) fail("group_ptr is empty; it needs at least one entry");
    expect_length("value_idx", value_idx.shape(0), group_ptr.shape(0) - 1);
    Kernel::Run run;
    with_uint(row_ptr, "row_ptr", [&](auto rp) {
        using P = Elem<decltype(rp)>;
        const P* gp = same_dtype<P>(group_ptr, "group_ptr", row_ptr, "row_ptr");
        with_uint(col_idx, "col_idx", [&](auto ci) {
            with_uint(value_idx, "value_idx", [&](auto vi) {
                using V = Elem<decltype(vi)>;
                if constexpr (sizeof(V) > 2) {
                    fail("value_idx must be uint8 or uint16");
                } else {
                    sp::CserView<P, Elem<decltype(ci)>, V> a{rows, cols, rp, gp, vi, group_ptr.shape(0) - 1, ci,
                                                             col_idx.shape(0), values.data(), values.shape(0),
                                                             omega0};
                    run = [a, row_ptr, group_ptr, value_idx, col_idx, values](const sp::Operands& op) {
                        sp::cser_matmul(a, op);
                    };
                }
            });
        });
    });
    return Kernel("cser", rows, cols, std::move(run));
}

Kernel packed_kernel(std::size_t rows, std::size_t cols, const Bytes& data, const Floats& table, const Index& corr_rows,
                     const Index& corr_cols, const Floats& corr_values, int bits, bool affine, float scale,
                     float offset) {
    if (corr_rows.dtype() != nb::dtype<uint32_t>() || corr_cols.dtype() != nb::dtype<uint32_t>())
        fail("corr_rows and corr_cols must be uint32");
    expect_length("corr_cols", corr_cols.shape(0), corr_rows.shape(0));
    expect_length("corr_values", corr_values.shape(0), corr_rows.shape(0));
    if (!affine && corr_rows.shape(0)) fail("corrections apply to affine decoding only");
    sp::PackedView a;
    a.rows = rows;
    a.cols = cols;
    a.bits = bits;
    a.data = data.data();
    a.data_bytes = data.shape(0);
    a.table = table.data();
    a.table_size = table.shape(0);
    a.affine = affine;
    a.scale = scale;
    a.offset = offset;
    a.corr_rows = static_cast<const uint32_t*>(corr_rows.data());
    a.corr_cols = static_cast<const uint32_t*>(corr_cols.data());
    a.corr_values = corr_values.data();
    a.corr_count = corr_rows.shape(0);
    return Kernel("packed", rows, cols, [a, data, table, corr_rows, corr_cols, corr_values](const sp::Operands& op) {
        sp::packed_matmul(a, op);
    });
}

// Stub signatures: the index arrays accept any of three dtypes, which nanobind cannot spell itself.
#define NNSQ_ANN(T, SHAPE, W) "Annotated[NDArray[" T "], dict(shape=" SHAPE ", order='C', device='cpu'" W ")]"
#define NNSQ_IDX NNSQ_ANN("numpy.uint8 | numpy.uint16 | numpy.uint32", "(None,)", ", writable=False")
#define NNSQ_F32 NNSQ_ANN("numpy.float32", "(None,)", ", writable=False")
#define NNSQ_U8 NNSQ_ANN("numpy.uint8", "(None,)", ", writable=False")
#define NNSQ_X NNSQ_ANN("numpy.float32", "(None, None)", ", writable=False")
#define NNSQ_OUT NNSQ_ANN("numpy.float32", "(None, None)", "")

sp::Isa parse_isa(const std::string& name) {
    if (name == "scalar") return sp::Isa::scalar;
    if (name == "avx2") return sp::Isa::avx2;
    if (name == "avx512") return sp::Isa::avx512;
    throw std::invalid_argument("unknown instruction set '" + name + "' (use 'scalar', 'avx2' or 'avx512')");
}

}  // namespace

void bind_sparse(nb::module_& m) {
    nb::exception<sp::FormatError>(m, "CoreFormatError", PyExc_ValueError);

    m.attr("PANEL_ROWS") = sp::kPanelRows;

    m.def("sparse_isa", []() { return std::string(sp::isa_name(sp::active_isa())); });
    m.def("sparse_isa_available", [](const std::string& name) { return sp::isa_available(parse_isa(name)); },
          "name"_a);
    m.def("sparse_set_isa", [](const std::string& name) { sp::set_isa(parse_isa(name)); }, "name"_a);

    m.def("packed_data_bytes", &sp::packed_data_bytes, "rows"_a, "cols"_a, "bits"_a);

    nb::class_<Kernel>(m, "Kernel", "A weight matrix in one format, bound to its arrays (made by the *_kernel factories).")
        .def("matmul", &Kernel::matmul, "x"_a.noconvert(), "out"_a.noconvert(),
             "bias"_a.noconvert().none() = nb::none(), "accumulate"_a = false,
             "threads"_a = 1,
             nb::sig("def matmul(self, x: " NNSQ_X ", out: " NNSQ_OUT ", bias: " NNSQ_F32
                     " | None = None, accumulate: bool = False, threads: int = 1) -> None"),
             "out = x @ W.T (+ bias), or out += ... with accumulate; threads > 1 split the rows of W.")
        .def_prop_ro("format", &Kernel::format)
        .def_prop_ro("rows", &Kernel::rows)
        .def_prop_ro("cols", &Kernel::cols);

    m.def("csr_kernel", &csr_kernel, "rows"_a, "cols"_a, "row_ptr"_a.noconvert(), "col_idx"_a.noconvert(),
          "values"_a.noconvert(),
          nb::sig("def csr_kernel(rows: int, cols: int, row_ptr: " NNSQ_IDX ", col_idx: " NNSQ_IDX
                  ", values: " NNSQ_F32 ") -> Kernel"));
    m.def("cer_kernel", &cer_kernel, "rows"_a, "cols"_a, "row_ptr"_a.noconvert(), "group_ptr"_a.noconvert(),
          "col_idx"_a.noconvert(), "omega"_a.noconvert(),
          nb::sig("def cer_kernel(rows: int, cols: int, row_ptr: " NNSQ_IDX ", group_ptr: " NNSQ_IDX
                  ", col_idx: " NNSQ_IDX ", omega: " NNSQ_F32 ") -> Kernel"));
    m.def("cser_kernel", &cser_kernel, "rows"_a, "cols"_a, "row_ptr"_a.noconvert(), "group_ptr"_a.noconvert(),
          "value_idx"_a.noconvert(), "col_idx"_a.noconvert(), "values"_a.noconvert(), "omega0"_a,
          nb::sig("def cser_kernel(rows: int, cols: int, row_ptr: " NNSQ_IDX ", group_ptr: " NNSQ_IDX
                  ", value_idx: " NNSQ_IDX ", col_idx: " NNSQ_IDX ", values: " NNSQ_F32
                  ", omega0: float) -> Kernel"));
    m.def("packed_kernel", &packed_kernel, "rows"_a, "cols"_a, "data"_a.noconvert(), "table"_a.noconvert(),
          "corr_rows"_a.noconvert(), "corr_cols"_a.noconvert(), "corr_values"_a.noconvert(), "bits"_a, "affine"_a,
          "scale"_a, "offset"_a,
          nb::sig("def packed_kernel(rows: int, cols: int, data: " NNSQ_U8 ", table: " NNSQ_F32
                  ", corr_rows: " NNSQ_IDX ", corr_cols: " NNSQ_IDX ", corr_values: " NNSQ_F32
                  ", bits: int, affine: bool, scale: float, offset: float) -> Kernel"));
}
