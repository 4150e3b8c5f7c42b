"""Hostile HDF5 files: each must be refused with a one-line message, leaking nothing it points at."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from reportgen.errors import SourceError
from reportgen.sources.detect import open_path
from reportgen.sources.hdf5_safe import SafeH5

SECRET = b"TOP-SECRET-0123456789"
DS = "layers/dense/vars/0"


def _weights_file(path: Path, build) -> Path:  # type: ignore[no-untyped-def]
    """Write a Keras-3-like weights file whose first dense variable is made by build(file)."""
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars").attrs["name"] = "dense"
        f["layers/dense/vars/1"] = np.zeros(4, "f4")
        build(f)
    return path


def _secret(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    return secret


def _refused(path: Path, where: str) -> str:
    with pytest.raises(SourceError) as err:
        open_path(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert where in message
    assert SECRET.decode() not in message
    assert "0123456789" not in message
    return message


def test_external_storage_dataset_refused(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    path = _weights_file(
        tmp_path / "ext.weights.h5",
        lambda f: f.create_dataset(DS, shape=(len(SECRET),), dtype="u1", external=[(str(secret), 0, len(SECRET))]),
    )
    # The file really would read the secret if asked.
    with h5py.File(path, "r") as f:
        assert bytes(f[DS][()]) == SECRET
    assert "external-storage" in _refused(path, "/" + DS)


def test_virtual_dataset_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.frombuffer(SECRET[:20], "u1")

    def build(f: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(20,), dtype="u1")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(20,))
        f.create_virtual_dataset(DS, layout)

    path = _weights_file(tmp_path / "vds.weights.h5", build)
    assert "virtual dataset" in _refused(path, "/" + DS)


def test_soft_link_refused(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        f["hidden"] = np.frombuffer(SECRET, "u1")
        f[DS] = h5py.SoftLink("/hidden")

    path = _weights_file(tmp_path / "soft.weights.h5", build)
    assert "soft link" in _refused(path, "/" + DS)


def test_soft_link_to_group_refused(tmp_path: Path) -> None:
    path = _weights_file(tmp_path / "softg.weights.h5", lambda f: f.__setitem__("alias", h5py.SoftLink("/layers")))
    assert "soft link" in _refused(path, "/alias")


def test_external_link_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.frombuffer(SECRET, "u1")
    path = _weights_file(
        tmp_path / "elink.weights.h5", lambda f: f.__setitem__(DS, h5py.ExternalLink(str(other), "/data"))
    )
    message = _refused(path, "/" + DS)
    assert "external link" in message


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_shape_bomb_refused(tmp_path: Path, compression: str | None) -> None:
    # 40 GB declared, nothing stored: reading it would allocate the lot.
    path = _weights_file(
        tmp_path / "bomb.weights.h5",
        lambda f: f.create_dataset(
            DS, shape=(100_000, 100_000), dtype="f4", chunks=(1000, 1000), compression=compression
        ),
    )
    assert path.stat().st_size < 1 << 20
    assert "declares" in _refused(path, "/" + DS)


def test_contiguous_dataset_without_storage_refused(tmp_path: Path) -> None:
    path = _weights_file(tmp_path / "late.weights.h5", lambda f: f.create_dataset(DS, shape=(50_000, 1000), dtype="f4"))
    assert "declares 200000000 bytes" in _refused(path, "/" + DS)


def test_unknown_filter_refused(tmp_path: Path) -> None:
    path = _weights_file(
        tmp_path / "plugin.weights.h5",
        lambda f: f.create_dataset(
            DS, data=np.arange(10, dtype="f4"), chunks=(10,), compression=32017, allow_unknown_filter=True
        ),
    )
    assert "filter id 32017" in _refused(path, "/" + DS)


def test_gzip_and_shuffle_allowed(tmp_path: Path) -> None:
    data = np.arange(12, dtype="f4").reshape(3, 4)
    path = _weights_file(
        tmp_path / "gz.weights.h5",
        lambda f: f.create_dataset(DS, data=data, compression="gzip", shuffle=True, fletcher32=True),
    )
    with open_path(path) as src:
        (layer,) = src.layers()
        assert np.array_equal(src.read(layer.params[0]), data)


def test_hard_link_cycle_terminates(tmp_path: Path) -> None:
    path = _weights_file(tmp_path / "cycle.weights.h5", lambda f: f.__setitem__(DS, np.ones((3, 4), "f4")))
    with h5py.File(path, "a") as f:
        f["layers/dense/loop"] = f["layers"]  # a hard link back to an ancestor
    with open_path(path) as src:
        assert [layer.name for layer in src.layers()] == ["dense"]


def test_hostile_weights_inside_keras_archive(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    inner = _weights_file(
        tmp_path / "model.weights.h5",
        lambda f: f.create_dataset(DS, shape=(len(SECRET),), dtype="u1", external=[(str(secret), 0, len(SECRET))]),
    )
    archive = tmp_path / "evil.keras"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Sequential", "config": {"name": "s", "layers": []}}')
        zf.write(inner, "model.weights.h5")
    message = _refused(archive, "/" + DS)
    assert f"{archive}:model.weights.h5" in message


def test_iter_slabs_bounded_and_exact(tmp_path: Path) -> None:
    data = np.arange(5 * 7 * 3, dtype="f4").reshape(5, 7, 3)
    path = tmp_path / "slabs.h5"
    with h5py.File(path, "w") as f:
        f["x"] = data
    with SafeH5(path) as h5:
        ds = h5.dataset("x")
        for max_elems in (1, 2, 4, 21, 22, 50, 10_000):
            pieces = list(h5.iter_slabs(ds, max_elems))
            assert all(0 < p.size <= max_elems for p in pieces)
            assert np.array_equal(np.concatenate(pieces), data.reshape(-1))


def test_external_link_target_is_never_opened(tmp_path: Path) -> None:
    # Opening a FIFO blocks until someone writes to it: a reader that so much as resolves
    # the link would hang here, so the check runs in a child process with a deadline.
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    path = _weights_file(
        tmp_path / "fifo_link.weights.h5", lambda f: f.__setitem__(DS, h5py.ExternalLink(str(fifo), "/data"))
    )
    code = (
        "import sys\nfrom reportgen.errors import SourceError\n"
        "from reportgen.sources.detect import open_path\n"
        "try:\n    open_path(sys.argv[1])\nexcept SourceError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert "external link to another file refused" in done.stdout, done.stderr


@pytest.mark.parametrize("command", ["inspect", "build"])
def test_cli_refuses_hostile_file_without_leaking(tmp_path: Path, capsys, command: str) -> None:  # type: ignore[no-untyped-def]
    """Through the CLI: exit code 4, one line on stderr, no output folder, the secret nowhere."""
    from reportgen.cli import main

    secret = _secret(tmp_path)
    path = _weights_file(
        tmp_path / "ext.weights.h5",
        lambda f: f.create_dataset(DS, shape=(len(SECRET),), dtype="u1", external=[(str(secret), 0, len(SECRET))]),
    )
    if command == "inspect":
        code = main(["inspect", str(path), "--json"])
    else:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"title: t\noutput: {tmp_path / 'out'}\nmodels:\n  - name: m\n    path: {path}\n")
        code = main(["build", str(cfg)])
    out, err = capsys.readouterr()
    assert code == 4
    assert err.count("\n") == 1 and "external-storage" in err
    assert SECRET.decode() not in out + err
    assert not (tmp_path / "out").exists()
