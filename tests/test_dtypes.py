"""Safetensors dtypes, edge-case shapes, corrupt headers and sharded checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from reportgen.errors import SourceError
from reportgen.sources.safetensors_file import SafetensorsSource


def write_raw(path: Path, header: dict[str, object], data: bytes, header_len: int | None = None) -> Path:
    """Write a safetensors file from a header dict and raw bytes, optionally lying about the length."""
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    n = len(raw) if header_len is None else header_len
    path.write_bytes(n.to_bytes(8, "little") + raw + data)
    return path


def write_arrays(path: Path, arrays: dict[str, tuple[str, np.ndarray]]) -> Path:
    """Write arrays under explicit safetensors dtype codes, laid out back to back."""
    header: dict[str, object] = {}
    data = b""
    for name, (code, arr) in arrays.items():
        blob = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": code,
            "shape": list(arr.shape),
            "data_offsets": [len(data), len(data) + len(blob)],
        }
        data += blob
    return write_raw(path, header, data)


def by_key(src: SafetensorsSource) -> dict[str, object]:
    return {p.key: p for layer in src.layers() for p in layer.params}


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.float16, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]
)
def test_numpy_dtypes_round_trip(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((3, 5)) * 50).astype(dtype)
    path = tmp_path / "m.safetensors"
    save_file({"fc.weight": values}, str(path))
    src = SafetensorsSource(path)
    ref = src.layers()[0].params[0]
    assert ref.dtype == np.dtype(dtype).name
    assert ref.shape == (3, 5)
    got = src.read(ref)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.astype(np.float64), values.astype(np.float64))
    chunks = list(src.iter_chunks(ref, max_elems=4))
    assert [c.size for c in chunks] == [4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), values.reshape(-1))


@pytest.mark.parametrize(
    ("code", "dtype", "name"),
    [
        ("BF16", ml_dtypes.bfloat16, "bfloat16"),
        ("F8_E4M3", ml_dtypes.float8_e4m3fn, "float8_e4m3fn"),
        ("F8_E5M2", ml_dtypes.float8_e5m2, "float8_e5m2"),
    ],
)
def test_ml_dtypes_read_back(tmp_path: Path, code: str, dtype: type, name: str) -> None:
    values = np.array([[0.5, -1.25, 3.0], [0.0, -0.0, 8.0]]).astype(dtype)
    path = write_arrays(tmp_path / "m.safetensors", {"fc.weight": (code, values), "fc.bias": ("F32", np.ones(2, "f4"))})
    src = SafetensorsSource(path)
    ref = by_key(src)["fc.weight"]
    assert ref.dtype == name
    assert ref.shape == (2, 3)
    got = src.read(ref)
    assert got.dtype.name == name
    np.testing.assert_array_equal(got.astype(np.float64), values.astype(np.float64))
    np.testing.assert_array_equal(
        np.concatenate(list(src.iter_chunks(ref, 4))).astype(np.float64),
        values.astype(np.float64).reshape(-1),
    )


def test_empty_and_scalar_tensors_are_listed_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": np.zeros((0, 4), np.float32), "a.step": np.array(7, np.int64)}, str(path))
    src = SafetensorsSource(path)
    refs = by_key(src)
    empty, scalar = refs["a.weight"], refs["a.step"]
    assert empty.shape == (0, 4) and empty.size == 0
    assert src.read(empty).shape == (0, 4)
    assert list(src.iter_chunks(empty)) == []
    assert scalar.shape == ()
    assert int(src.read(scalar)) == 7
    assert [c.tolist() for c in src.iter_chunks(scalar)] == [[7]]


def _good(tmp_path: Path) -> Path:
    return write_arrays(tmp_path / "m.safetensors", {"fc.weight": ("F32", np.arange(6, dtype="f4").reshape(2, 3))})


def test_truncated_data_is_refused(tmp_path: Path) -> None:
    path = _good(tmp_path)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(SourceError, match=r"m\.safetensors: tensor 'fc.weight': bad offsets.*beyond the file size"):
        SafetensorsSource(path)


def test_file_shorter_than_length_prefix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(SourceError, match=r"tiny\.safetensors: truncated"):
        SafetensorsSource(path)


def test_header_length_beyond_file_size_is_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "m.safetensors", {}, b"", header_len=4096)
    # The length field is not quoted back: in a file that is not safetensors it is content.
    with pytest.raises(SourceError, match=r"m\.safetensors: truncated: header length field exceeds the file size \d+$"):
        SafetensorsSource(path)


def test_huge_header_length_is_refused(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "m.safetensors", {}, b"", header_len=1 << 40)
    with pytest.raises(SourceError, match=r"m\.safetensors: not a safetensors file \(header length field above \d+\)$"):
        SafetensorsSource(path)


def test_offsets_beyond_file_are_refused(tmp_path: Path) -> None:
    header = {"fc.weight": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    path = write_raw(tmp_path / "m.safetensors", header, b"\0" * 16)
    with pytest.raises(SourceError, match=r"m\.safetensors: tensor 'fc.weight': bad offsets"):
        SafetensorsSource(path)


def test_overlapping_offsets_are_refused(tmp_path: Path) -> None:
    header = {
        "a.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b.weight": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    path = write_raw(tmp_path / "m.safetensors", header, b"\0" * 24)
    with pytest.raises(
        SourceError, match=r"m\.safetensors: tensor 'b.weight': bad offsets: overlaps tensor 'a.weight'"
    ):
        SafetensorsSource(path)


def test_offsets_inconsistent_with_shape_are_refused(tmp_path: Path) -> None:
    header = {"a.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}
    path = write_raw(tmp_path / "m.safetensors", header, b"\0" * 16)
    with pytest.raises(SourceError, match=r"tensor 'a.weight': bad offsets: 12 bytes stored"):
        SafetensorsSource(path)


def test_unknown_dtype_is_refused(tmp_path: Path) -> None:
    header = {"a.weight": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}
    path = write_raw(tmp_path / "m.safetensors", header, b"\0" * 16)
    with pytest.raises(SourceError, match=r"m\.safetensors: tensor 'a.weight': unknown dtype 'F128'"):
        SafetensorsSource(path)


def test_bad_json_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((8).to_bytes(8, "little") + b"{not js}")
    with pytest.raises(SourceError, match=r"bad\.safetensors: header is not valid JSON"):
        SafetensorsSource(bad)
    dup = tmp_path / "dup.safetensors"
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    raw = ('{"a.weight": ' + entry + ', "a.weight": ' + entry + "}").encode()
    dup.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 4)
    with pytest.raises(SourceError, match=r"dup\.safetensors: header is not valid JSON \(duplicate key 'a.weight'\)"):
        SafetensorsSource(dup)


def _sharded(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    save_file(
        {"layer.0.weight": np.ones((2, 2), "f4"), "layer.0.bias": np.zeros(2, "f4")},
        str(folder / "model-00001-of-00002.safetensors"),
    )
    save_file({"layer.1.weight": np.full((3, 2), 2, "f4")}, str(folder / "model-00002-of-00002.safetensors"))
    index = folder / "model.safetensors.index.json"
    index.write_text(
        json.dumps(
            {
                "metadata": {"total_size": 40},
                "weight_map": {
                    "layer.0.weight": "model-00001-of-00002.safetensors",
                    "layer.0.bias": "model-00001-of-00002.safetensors",
                    "layer.1.weight": "model-00002-of-00002.safetensors",
                },
            }
        )
    )
    return index


@pytest.mark.parametrize("via", ["index", "folder"])
def test_sharded_checkpoint_lists_all_tensors(tmp_path: Path, via: str) -> None:
    index = _sharded(tmp_path / "ckpt")
    src = SafetensorsSource(index if via == "index" else index.parent)
    refs = by_key(src)
    assert sorted(refs) == ["layer.0.bias", "layer.0.weight", "layer.1.weight"]
    assert [layer.name for layer in src.layers()] == ["layer.0", "layer.1"]
    np.testing.assert_array_equal(src.read(refs["layer.1.weight"]), np.full((3, 2), 2, "f4"))
    assert len(src.info.files) == 3


def test_index_pointing_outside_its_folder_is_refused(tmp_path: Path) -> None:
    save_file({"x.weight": np.ones(2, "f4")}, str(tmp_path / "outside.safetensors"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    index = folder / "model.safetensors.index.json"
    for target in ["../outside.safetensors", str(tmp_path / "outside.safetensors")]:
        index.write_text(json.dumps({"weight_map": {"x.weight": target}}))
        with pytest.raises(SourceError, match=r"model\.safetensors\.index\.json: weight_map\['x.weight'\]: refused"):
            SafetensorsSource(index)


def test_index_shard_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    save_file({"x.weight": np.ones(2, "f4")}, str(tmp_path / "outside.safetensors"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "shard.safetensors").symlink_to(tmp_path / "outside.safetensors")
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"x.weight": "shard.safetensors"}}))
    with pytest.raises(SourceError, match=r"leads outside"):
        SafetensorsSource(index)


def test_index_naming_a_tensor_missing_from_its_shard_is_refused(tmp_path: Path) -> None:
    index = _sharded(tmp_path / "ckpt")
    doc = json.loads(index.read_text())
    doc["weight_map"]["layer.9.weight"] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(doc))
    with pytest.raises(SourceError, match=r"weight_map\['layer.9.weight'\]: tensor not found"):
        SafetensorsSource(index)
