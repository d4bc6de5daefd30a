"""Coverage-guided fuzzing of the ``.nnsq`` reader and the C++ decoders with atheris (libFuzzer), with
an oracle.  ``python benchmarks/fuzz_atheris.py -runs=10000000 -artifact_prefix=tests/fuzz_regressions/``

atheris is not a project dependency (it has wheels for some Pythons only)::

    pip install atheris

Inputs are ``.nnsq`` files.  The custom mutator keeps them structured: it parses the input (or, if it
is not a valid file, one of ``fuzz_long.py``'s seed files) and mutates one record's header fields or
payload, or the index, with the CRCs recomputed, so inputs reach the header checks and the decoders;
one time in four it mutates raw bytes with libFuzzer's own mutator.  The Python modules of nnsqueeze
are instrumented, so the coverage of the parser and the method dispatch guides the search (the C++
decoders are not instrumented: their branches are reached through the structure-aware mutations).

The oracle, for every input:
* decoding ends in success or ``BitstreamError``; anything else is a crash (libFuzzer saves the input
  under ``-artifact_prefix``);
* a successful decode, stored losslessly and decoded again, gives the same bits (so the values are
  representable and the writer accepts them);
* the peak RSS stays below ``FUZZ_RSS_LIMIT_MB`` (default 2048).
"""

from __future__ import annotations

import os
import random
import resource
import sys
from pathlib import Path

import atheris
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
with atheris.instrument_imports():
    import nnsqueeze
    from nnsqueeze import BitstreamError

from fuzz_long import Parsed, mutate_index, mutate_record, seed_files

SEEDS = seed_files()
PARSED = [Parsed(d) for d in SEEDS]
RSS_LIMIT_MB = float(os.environ.get("FUZZ_RSS_LIMIT_MB", "2048"))


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if rng.random() < 0.25:
        return bytes(atheris.Mutate(data, max_size))
    try:
        parsed = Parsed(data)
        if not parsed.records:
            raise BitstreamError("no records")
    except Exception:  # not a valid file (or no records): start from a seed
        parsed = PARSED[rng.randrange(len(PARSED))]
    out = mutate_record(rng, parsed) if rng.random() < 0.85 else mutate_index(rng, parsed)
    return out[:max_size]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_one_input(data: bytes) -> None:
    try:
        decoded = nnsqueeze.decompress(data, threads=1)
    except BitstreamError:
        return
    again = nnsqueeze.decompress(nnsqueeze.compress(decoded, None, lossless=True, threads=1).data, threads=1)
    for name, array in decoded.items():
        if not _same_bits(array, again[name]):
            raise AssertionError(f"{name}: the decoded values do not survive a lossless round trip")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if peak_mb > RSS_LIMIT_MB:
        raise MemoryError(f"peak RSS {peak_mb:.0f} MB above {RSS_LIMIT_MB:.0f} MB")


def main() -> None:
    corpus = Path(__file__).resolve().parent / "fuzz_corpus"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed{i}.nnsq").write_bytes(seed)
    for arg in sys.argv[1:]:  # libFuzzer writes crashing inputs there, but does not make the folder
        if arg.startswith("-artifact_prefix=") and arg.endswith("/"):
            Path(arg.split("=", 1)[1]).mkdir(parents=True, exist_ok=True)
    args = [*sys.argv, str(corpus)] if not any(not a.startswith("-") for a in sys.argv[1:]) else sys.argv
    atheris.Setup(args, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
