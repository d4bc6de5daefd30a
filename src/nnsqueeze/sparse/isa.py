"""Which instruction-set path the sparse kernels take: the best the CPU has, or one you force.

One build serves every x86-64 CPU: ``avx512`` (AVX-512 F/BW/VL/DQ), ``avx2`` (AVX2 + FMA) and the
portable ``scalar`` path are all compiled in, and the fastest one the CPU reports is chosen at import.
Set ``NNSQUEEZE_SPARSE_ISA=scalar`` (or ``avx2``, ``avx512``) to force a path for the process, or
call :func:`force`; on other CPUs (aarch64 included) only ``scalar`` exists.

>>> from nnsqueeze.sparse import isa
>>> "scalar" in isa.available()
True
>>> isa.active() in isa.available()
True
"""

from __future__ import annotations

import os

from nnsqueeze import _core
from nnsqueeze.errors import ConfigError

ENVIRONMENT_VARIABLE = "NNSQUEEZE_SPARSE_ISA"
PATHS = ("scalar", "avx2", "avx512")  # portable first, then by width


def available() -> list[str]:
    """The paths this CPU can run, portable first."""
    return [name for name in PATHS if _core.sparse_isa_available(name)]


def active() -> str:
    return _core.sparse_isa()


def force(name: str) -> None:
    """Makes every later kernel call take path ``name``; raises :class:`ConfigError` if it cannot."""
    if name not in PATHS:
        msg = f"unknown instruction-set path {name!r}; the paths are {', '.join(PATHS)}"
        raise ConfigError(msg)
    if not _core.sparse_isa_available(name):
        msg = f"this CPU cannot run the {name!r} kernels; it has {', '.join(available())}"
        raise ConfigError(msg)
    _core.sparse_set_isa(name)


def force_from_environment() -> None:
    """Applies ``NNSQUEEZE_SPARSE_ISA`` if it is set (``nnsqueeze.sparse`` calls this on import)."""
    name = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not name:
        return
    try:
        force(name)
    except ConfigError as exc:
        msg = f"{ENVIRONMENT_VARIABLE}={name}: {exc}"
        raise ConfigError(msg) from exc
