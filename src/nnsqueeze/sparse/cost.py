"""The cost model of Wiedemann et al. (TNNLS 2019): storage, operation counts and 45 nm energy.

Operation counts follow the talk's convention for one matrix-vector product ``y = W x`` (per output
row: the pointers it reads, one load per stored index, value and activation, one multiply per product
(CSR, dense) or per group of shared values (CER, CSER), the additions that combine them, one write).
Energy prices each memory access by the width of the element and the total size of the array it is
read from (Horowitz, ISSCC 2014, as tabulated in AnacletoLAB/sHAM), and each 32-bit float add and
multiply at 0.9 and 3.7 pJ.

>>> from nnsqueeze.sparse.cost import dense_model_cost, vgg16_layers
>>> c = dense_model_cost(vgg16_layers())
>>> c.parameters, round(c.megabytes), c.ops // 10**6, round(c.energy.compute_pj / 1e9)
(138357544, 553, 30940, 71)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

# pJ per access of a 32-bit element by array size (bytes); other widths scale linearly with the bits.
MEMORY_PJ_32BIT: tuple[tuple[float, float], ...] = (
    (8 * 1024, 5.0),
    (32 * 1024, 10.0),
    (1024 * 1024, 50.0),
    (float("inf"), 1000.0),  # DRAM
)
ADD_PJ_32BIT = 0.9
MULT_PJ_32BIT = 3.7

#: The 45 nm table (pJ) by operation and element width, as in AnacletoLAB/sHAM ``energy_costs``.
ENERGY_45NM: dict[str, dict[int, float]] = {
    "add": {8: 0.2, 16: 0.4, 32: 0.9},
    "mult": {8: 0.6, 16: 1.1, 32: 3.7},
    "memory <= 8 KB": {8: 1.25, 16: 2.5, 32: 5.0},
    "memory <= 32 KB": {8: 2.5, 16: 5.0, 32: 10.0},
    "memory <= 1 MB": {8: 12.5, 16: 25.0, 32: 50.0},
    "memory > 1 MB": {8: 250.0, 16: 500.0, 32: 1000.0},
}


def access_pj(bits: int, array_bytes: int) -> float:
    """Energy of one access to an element of ``bits`` bits in an array of ``array_bytes`` bytes."""
    for limit, pj in MEMORY_PJ_32BIT:
        if array_bytes <= limit:
            return pj * bits / 32
    raise AssertionError  # pragma: no cover - the last limit is infinite


@dataclass(frozen=True)
class Access:
    """``count`` accesses to elements of ``bits`` bits of the array ``array`` (``array_bytes`` in total)."""

    array: str
    count: int
    bits: int
    array_bytes: int

    @property
    def energy_pj(self) -> float:
        return self.count * access_pj(self.bits, self.array_bytes)


@dataclass(frozen=True)
class OpCounts:
    """Loads, additions, multiplications and writes of a product (the talk's convention)."""

    loads: int
    adds: int
    mults: int
    writes: int

    @property
    def ops(self) -> int:
        """Arithmetic operations: additions plus multiplications (the seed's "ops")."""
        return self.adds + self.mults

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(
            self.loads + other.loads,
            self.adds + other.adds,
            self.mults + other.mults,
            self.writes + other.writes,
        )

    def __mul__(self, k: int) -> OpCounts:
        return OpCounts(self.loads * k, self.adds * k, self.mults * k, self.writes * k)


@dataclass(frozen=True)
class Energy:
    """Energy of a product in picojoules: arithmetic (32-bit float) and memory accesses."""

    compute_pj: float
    memory_pj: float

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.memory_pj

    def __add__(self, other: Energy) -> Energy:
        return Energy(self.compute_pj + other.compute_pj, self.memory_pj + other.memory_pj)

    def __mul__(self, k: float) -> Energy:
        return Energy(self.compute_pj * k, self.memory_pj * k)


@dataclass(frozen=True)
class ProductCost:
    """Accesses and arithmetic of one matrix-vector product in some format."""

    accesses: tuple[Access, ...]
    adds: int
    mults: int

    @property
    def counts(self) -> OpCounts:
        loads = sum(a.count for a in self.accesses if a.array != "y")
        writes = sum(a.count for a in self.accesses if a.array == "y")
        return OpCounts(loads, self.adds, self.mults, writes)

    @property
    def energy(self) -> Energy:
        compute = self.adds * ADD_PJ_32BIT + self.mults * MULT_PJ_32BIT
        return Energy(compute, sum(a.energy_pj for a in self.accesses))


def activation_accesses(rows: int, cols: int, x_loads: int) -> tuple[Access, Access]:
    """The loads of x (float32, ``cols`` long) and the writes of y (float32, ``rows`` long)."""
    return Access("x", x_loads, 32, 4 * cols), Access("y", rows, 32, 4 * rows)


def row_adds(nnz_per_row: Iterable[int]) -> int:
    """Additions that combine each row's products: nnz - 1 per non-empty row."""
    return sum(max(int(k) - 1, 0) for k in nnz_per_row)


# -------------------------------------------------------------------------------------- layer shapes


@dataclass(frozen=True)
class LayerShape:
    """A weight layer as a matrix (``rows`` outputs x ``cols`` inputs) applied ``positions`` times per
    input (1 for a fully connected layer, H_out * W_out for a convolution via im2col)."""

    name: str
    rows: int
    cols: int
    positions: int = 1
    bias: bool = True

    @property
    def parameters(self) -> int:
        return self.rows * self.cols + (self.rows if self.bias else 0)

    @property
    def macs(self) -> int:
        return self.rows * self.cols * self.positions

    @staticmethod
    def conv2d(
        name: str, c_in: int, c_out: int, kernel: int, out_hw: tuple[int, int], bias: bool = True
    ) -> LayerShape:
        return LayerShape(name, c_out, c_in * kernel * kernel, out_hw[0] * out_hw[1], bias)


def vgg16_layers(image_size: int = 224) -> tuple[LayerShape, ...]:
    """The 16 weight layers of VGG-16 (Simonyan & Zisserman 2015, configuration D) on RGB images."""
    layers: list[LayerShape] = []
    c_in, size = 3, image_size
    for block, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, convs + 1):
            layers.append(LayerShape.conv2d(f"conv{block}_{i}", c_in, width, 3, (size, size)))
            c_in = width
        size //= 2
    layers.append(LayerShape("fc6", 4096, c_in * size * size))
    layers.append(LayerShape("fc7", 4096, 4096))
    layers.append(LayerShape("fc8", 1000, 4096))
    return tuple(layers)


@dataclass(frozen=True)
class ModelCost:
    """Totals over a model's layers for one input."""

    parameters: int
    bytes: int
    counts: OpCounts
    energy: Energy

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6

    @property
    def ops(self) -> int:
        return self.counts.ops


def dense_layer_cost(layer: LayerShape) -> ProductCost:
    """One dense float32 matrix-vector product of ``layer`` (bias added if it has one)."""
    m, n = layer.rows, layer.cols
    x, y = activation_accesses(m, n, m * n)
    accesses = [Access("W", m * n, 32, 4 * m * n), x, y]
    adds = m * max(n - 1, 0)
    if layer.bias:
        accesses.append(Access("bias", m, 32, 4 * m))
        adds += m
    return ProductCost(tuple(accesses), adds, m * n)


def dense_model_cost(layers: Sequence[LayerShape]) -> ModelCost:
    """Storage (float32), operations and energy of a dense model for one input, from shapes alone.

    With VGG-16 this gives the seed's dense row: 138 M parameters, 553 MB, 30,940 M operations and
    71 mJ of arithmetic energy (the seed counts arithmetic only; ``energy.memory_pj`` adds the
    memory accesses)."""
    params = sum(layer.parameters for layer in layers)
    counts = OpCounts(0, 0, 0, 0)
    energy = Energy(0.0, 0.0)
    for layer in layers:
        c = dense_layer_cost(layer)
        counts = counts + c.counts * layer.positions
        energy = energy + c.energy * layer.positions
    return ModelCost(params, 4 * params, counts, energy)


class CostedFormat(Protocol):
    """What :func:`format_model_cost` needs of a format (every :class:`~nnsqueeze.sparse.Format` has it)."""

    @property
    def nbytes(self) -> int: ...

    def product_cost(self, *, bias: bool = False) -> ProductCost: ...


def format_model_cost(layers: Sequence[tuple[LayerShape, CostedFormat]]) -> ModelCost:
    """Totals for one input of a model whose layer weights are held in the given formats: storage
    (format bytes plus float32 biases), operations and energy (each layer's matrix-vector product
    ``positions`` times)."""
    params = sum(layer.parameters for layer, _ in layers)
    nbytes = 0
    counts = OpCounts(0, 0, 0, 0)
    energy = Energy(0.0, 0.0)
    for layer, fmt in layers:
        nbytes += fmt.nbytes + (4 * layer.rows if layer.bias else 0)
        c = fmt.product_cost(bias=layer.bias)
        counts = counts + c.counts * layer.positions
        energy = energy + c.energy * layer.positions
    return ModelCost(params, nbytes, counts, energy)
