// The private extension module nnsqueeze._core: type conversion and forwarding only.
#include <nanobind/nanobind.h>

namespace nb = nanobind;

void bind_coding(nb::module_& m);
void bind_quant(nb::module_& m);
void bind_sparse(nb::module_& m);
void bind_nnr(nb::module_& m);

NB_MODULE(_core, m) {
    m.doc() = "nnsqueeze C++ core (private; use the nnsqueeze package instead)";
    bind_coding(m);
    bind_quant(m);
    bind_sparse(m);
    bind_nnr(m);
}
