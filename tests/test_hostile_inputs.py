"""Malformed and hostile inputs: each ends with its documented exit code and one line, never exit 1."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile import (
    assert_clean_failure,
    config_file,
    dense_config,
    keras_archive,
    raw_header,
    run,
    weights_h5,
    write_safetensors,
)

from reportgen.config import MAX_YAML_DEPTH, parse_config
from reportgen.sources.safety import MAX_JSON_DEPTH

SECRET = "TOP-SECRET-0123456789"
GOOD = "title: t\nmodels:\n  - {name: a, path: x.safetensors}\n"

# ---------------------------------------------------------------------------- YAML configs

YAML_CASES = {
    "python-object": ("title: !!python/object/apply:os.system ['echo PWNED']\n", ":1: YAML syntax error: tags"),
    "python-name": ("title: !!python/name:os.system\nmodels: []\n", "tags are not allowed"),
    "custom-tag": ("title: !secret x\nmodels: []\n", "tags are not allowed (!secret)"),
    "bad-binary": ("title: !!binary '@@@@'\nmodels: []\n", "tags are not allowed"),
    "bad-timestamp": ("title: !!timestamp 'yesterday'\nmodels: []\n", "tags are not allowed"),
    "set-tag": ("title: !!set {a, b}\nmodels: []\n", "tags are not allowed"),
    "complex-key-block": ("? [a, b]\n: 1\ntitle: t\n", ":1: YAML syntax error: keys must be plain text"),
    "complex-key-flow": ("{[a]: 1, title: t}\n", "keys must be plain text"),
    "mapping-key": ("? {a: 1}\n: x\n", "keys must be plain text"),
    "deep-flow": ("title: " + "[" * 5000 + "]" * 5000 + "\n", f"nested deeper than {MAX_YAML_DEPTH} levels"),
    "deep-block": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n", "nested deeper"),
    "anchor": ("a: &x 1\nb: *x\n", "anchors are not allowed"),
    "huge-int": ("title: t\nbins: " + "9" * 5000 + "\nmodels: []\n", "invalid YAML value"),
    "control-char": ("title: \x07bell\n", "YAML syntax error"),
    "nul-byte": ("title: a\x00b\n", "YAML syntax error"),
}


@pytest.mark.parametrize("name", sorted(YAML_CASES))
def test_malformed_yaml_is_a_config_error(tmp_path: Path, name: str) -> None:
    text, needle = YAML_CASES[name]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    line = assert_clean_failure(run("build", str(cfg)), 3, str(cfg), needle)
    assert "PWNED" not in line and "\x07" not in line and "\x00" not in line


def test_impossible_date_is_plain_text(tmp_path: Path) -> None:
    # Timestamps are not resolved at all: 2001-13-45 would crash the date constructor.
    loaded = parse_config("title: 2001-13-45\nmodels:\n  - {name: a, path: x}\n", tmp_path / "c.yaml")
    assert loaded.config.title == "2001-13-45"


def test_non_utf8_config_names_the_offset_not_the_byte(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"title: caf\xe9\n")
    line = assert_clean_failure(run("build", str(cfg)), 3, str(cfg), "not UTF-8 text (invalid byte at offset 10)")
    assert "0xe9" not in line


def test_config_naming_a_scheduler_is_refused_with_how_to(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("title: t\nexecutor: dask\nscheduler: tcp://attacker:8786\nmodels:\n  - {name: a, path: x}\n")
    assert_clean_failure(
        run("build", str(cfg)), 3, f"{cfg}:3: scheduler: a config cannot choose a Dask scheduler", "--scheduler ADDRESS"
    )


def test_scheduler_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_build(loaded, options, progress):  # type: ignore[no-untyped-def]
        seen["scheduler"] = options.scheduler
        raise SystemExit(0)

    monkeypatch.setattr("reportgen.pipeline.build", fake_build)
    monkeypatch.setenv("REPORTGEN_SCHEDULER", "tls://cluster:8786")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    with pytest.raises(SystemExit):
        run("build", str(cfg))
    assert seen == {"scheduler": "tls://cluster:8786"}
    outcome = run("build", str(cfg), "--executor", "threads")
    assert_clean_failure(outcome, 2, "$REPORTGEN_SCHEDULER needs --executor dask, not threads")


# ---------------------------------------------------------------------------- pkg: paths


@pytest.mark.slow
def test_pkg_path_imports_nothing(tmp_path: Path) -> None:
    # find_spec('this.zen') would import `this`, which prints the Zen of Python.
    cfg = config_file(tmp_path, "pkg:this.zen/x.h5")
    outcome = run("build", str(cfg))
    assert "Beautiful is better" not in outcome.out + outcome.err
    assert_clean_failure(outcome, 3, "package 'this.zen' is not installed")


def test_pkg_path_never_runs_a_module_in_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "__init__.py").write_text("print('PWNED'); open('pwned', 'w').close()\n")
    (tmp_path / "evil" / "sub").mkdir()
    cfg = config_file(tmp_path, "pkg:evil.sub/w.h5")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "reportgen", "build", str(cfg)], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert "PWNED" not in proc.stdout + proc.stderr
    assert not (tmp_path / "pwned").exists()
    assert proc.returncode == 4, proc.stderr  # found as data: evil/sub/w.h5 does not exist
    assert "no such file" in proc.stderr


# ---------------------------------------------------------------------------- files that are not files


@pytest.mark.parametrize("command", ["inspect", "build-config", "build-weights", "diff"])
def test_fifo_is_refused_at_once(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    if command == "inspect":
        outcome, code = run("inspect", str(fifo)), 4
    elif command == "build-config":
        outcome, code = run("build", str(fifo)), 3
    elif command == "build-weights":
        outcome, code = run("build", str(config_file(tmp_path, fifo))), 4
    else:
        outcome, code = run("diff", str(fifo), str(fifo)), 4
    assert_clean_failure(outcome, code, "not a regular file")
    assert outcome.seconds < 10


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/tty"])
def test_devices_are_refused(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"{device} absent")
    assert_clean_failure(run("inspect", device), 4, "not a regular file")


def test_nul_byte_in_names(tmp_path: Path) -> None:
    assert_clean_failure(run("inspect", "a\x00b.safetensors"), 4, "invalid file name (NUL byte)")
    assert_clean_failure(run("build", "c\x00.yaml"), 3, "invalid file name (NUL byte)")
    cfg = tmp_path / "c.yaml"
    cfg.write_text('title: t\nformats: [json]\nmodels:\n  - {name: a, path: "w\\0.h5"}\n')
    assert_clean_failure(run("build", str(cfg)), 4, "models[0].path: no such file or folder", "w\\x00.h5")
    good = config_file(tmp_path, write_safetensors(tmp_path / "m.safetensors", {"fc.weight": np.ones((2, 2))}))
    assert_clean_failure(run("build", str(good), "--output", "out\x00put"), 7, "invalid folder name (NUL byte)")


def test_over_long_names(tmp_path: Path) -> None:
    long = str(tmp_path / ("x" * 5000))
    assert_clean_failure(run("inspect", long), 4, "File name too long")
    assert_clean_failure(run("build", long), 3, "File name too long")
    good = config_file(tmp_path, write_safetensors(tmp_path / "m.safetensors", {"fc.weight": np.ones((2, 2))}))
    assert_clean_failure(run("build", str(good), "--output", long), 7, "File name too long")


def test_non_utf8_file_names(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/w\xff\x1b[2J.safetensors"
    name = os.fsdecode(raw)
    write_safetensors(Path(name), {"fc.weight": np.ones((2, 2))})
    outcome = run("inspect", name)
    assert outcome.code == 0, outcome.err
    assert "\x1b" not in outcome.out and "\\udcff" in outcome.out
    missing = run("inspect", name + "-missing")
    line = assert_clean_failure(missing, 4, "no such file")
    assert "\x1b" not in line


# ---------------------------------------------------------------------------- deep JSON inside weights files

DEEP = "[" * 50_000 + "]" * 50_000
NESTED = "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5)


@pytest.mark.parametrize("doc", [DEEP, NESTED], ids=["parser-limit", "walk-limit"])
def test_deep_json_in_keras_config(tmp_path: Path, doc: str) -> None:
    path = keras_archive(tmp_path / "m.keras", config=('{"class_name": "Sequential", "config": ' + doc + "}").encode())
    assert_clean_failure(run("inspect", str(path)), 4, "config.json nests JSON deeper than")


@pytest.mark.parametrize("doc", [DEEP, NESTED], ids=["parser-limit", "walk-limit"])
def test_deep_json_in_legacy_model_config(tmp_path: Path, doc: str) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": ' + doc + "}"
        f.create_group("model_weights").attrs["layer_names"] = np.array([b"dense"])
    assert_clean_failure(run("inspect", str(path)), 4, "attribute model_config nests JSON deeper than")


def test_deep_json_in_safetensors_header(tmp_path: Path) -> None:
    path = raw_header(tmp_path / "m.safetensors", ('{"a": ' + DEEP + "}").encode())
    assert_clean_failure(run("inspect", str(path)), 4, "header nests JSON deeper than the parser allows")


def test_deep_json_in_stats_for_diff(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_text('{"schema_version": "1.0", "models": ' + DEEP + "}")
    outcome = run("diff", str(path), str(path))
    assert_clean_failure(outcome, 4, str(path))


# ---------------------------------------------------------------------------- malformed stats.json in diff

STATS_CASES = {
    "not-json": "{nope",
    "not-utf8": b'{"a": "\xff"}',
    "list": "[1, 2]",
    "no-models": '{"schema_version": "1.0"}',
    "models-not-list": '{"schema_version": "1.0", "models": 3}',
    "unknown-version": '{"schema_version": "7.0", "models": []}',
}


@pytest.mark.parametrize("name", sorted(STATS_CASES))
def test_malformed_stats_json_in_diff(tmp_path: Path, name: str) -> None:
    doc = STATS_CASES[name]
    path = tmp_path / "stats.json"
    path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    line = assert_clean_failure(run("diff", str(path), str(path)), 4, str(path))
    assert "\\xff" not in line and "0xff" not in line


# ---------------------------------------------------------------------------- corrupt zips


def _patch(path: Path, old: bytes, new: bytes, count: int = -1) -> None:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, count))


def _member_offset(path: Path, name: str) -> int:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = path.read_bytes()
    n, m = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    return info.header_offset + 30 + n + m


def test_bad_crc_in_compressed_member(tmp_path: Path) -> None:
    path = keras_archive(tmp_path / "m.keras", compression=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("config.json")
    data = bytearray(path.read_bytes())
    crc = info.CRC.to_bytes(4, "little")
    data = data.replace(crc, (info.CRC ^ 1).to_bytes(4, "little"))
    path.write_bytes(bytes(data))
    assert_clean_failure(run("inspect", str(path)), 4, "archive member config.json is damaged")


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    path = keras_archive(tmp_path / "m.keras", compression=zipfile.ZIP_DEFLATED)
    start = _member_offset(path, "model.weights.h5")
    data = bytearray(path.read_bytes())
    for i in range(start + 4, start + 40):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    assert_clean_failure(run("inspect", str(path)), 4, "model.weights.h5")


def test_encrypted_flag(tmp_path: Path) -> None:
    path = keras_archive(tmp_path / "m.keras")
    with zipfile.ZipFile(path) as zf:
        offsets = [i.header_offset for i in zf.infolist()]
    data = bytearray(path.read_bytes())
    for off in offsets:  # general-purpose flag, bit 0: encrypted
        data[off + 6] |= 1
    # ... and in the central directory, which zipfile reads first.
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:
        data[pos + 8] |= 1
        pos += 4
    path.write_bytes(bytes(data))
    assert_clean_failure(run("inspect", str(path)), 4, str(path))


def test_unknown_compression_method(tmp_path: Path) -> None:
    path = keras_archive(tmp_path / "m.keras", compression=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        pos = 0
        while (pos := data.find(sig, pos)) >= 0:
            data[pos + at : pos + at + 2] = (99).to_bytes(2, "little")
            pos += 4
    path.write_bytes(bytes(data))
    assert_clean_failure(run("inspect", str(path)), 4, str(path))


def test_truncated_zip(tmp_path: Path) -> None:
    path = keras_archive(tmp_path / "m.keras")
    path.write_bytes(path.read_bytes()[:-30])
    assert_clean_failure(run("inspect", str(path)), 4, str(path))


@pytest.mark.slow
def test_member_that_expands_hugely_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(dense_config()))
        zf.writestr("model.weights.h5", b"\0" * (300 << 20))
    assert path.stat().st_size < 2 << 20
    outcome = run("inspect", str(path))
    assert_clean_failure(outcome, 4, "archive member model.weights.h5 expands", "refused (more than 100x)")
    assert outcome.seconds < 5


def test_disk_full_while_inflating_an_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    path = keras_archive(tmp_path / "m.keras", compression=zipfile.ZIP_DEFLATED)

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self) -> None:
            pass

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: Full())
    assert_clean_failure(run("inspect", str(path)), 4, "no space left in the temporary folder")


def test_compressed_archive_reads_like_a_stored_one(tmp_path: Path) -> None:
    stored = run("inspect", str(keras_archive(tmp_path / "a.keras")), "--json")
    deflated = run("inspect", str(keras_archive(tmp_path / "b.keras", compression=zipfile.ZIP_DEFLATED)), "--json")
    assert stored.code == deflated.code == 0
    assert json.loads(stored.out)["tensors"] == json.loads(deflated.out)["tensors"]


# ---------------------------------------------------------------------------- HDF5


def test_bit_flipped_hdf5_never_crashes(tmp_path: Path) -> None:
    clean = weights_h5(tmp_path / "clean.weights.h5").read_bytes()
    rng = np.random.default_rng(0)
    codes = []
    for trial in range(40):
        data = bytearray(clean)
        for pos in rng.integers(0, 2048, size=4):  # superblock and object headers live up front
            data[pos] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"flip{trial}.weights.h5"
        path.write_bytes(bytes(data))
        outcome = run("inspect", str(path))
        assert outcome.code in (0, 4), outcome.err
        if outcome.code:
            assert_clean_failure(outcome, 4, str(path))
        codes.append(outcome.code)
    assert 4 in codes  # the flips do damage the file


@pytest.mark.parametrize("kind", ["string", "vlen-string", "compound", "reference", "complex", "opaque"])
def test_non_numeric_tensors_are_listed_not_analysed(tmp_path: Path, kind: str) -> None:
    path = weights_h5(tmp_path / "m.weights.h5")
    with h5py.File(path, "a") as f:
        g = f.create_group("layers/odd/vars")
        if kind == "string":
            g["0"] = np.array([b"ab", b"cd"])
        elif kind == "vlen-string":
            g.create_dataset("0", data=["ab", "cde"], dtype=h5py.string_dtype())
        elif kind == "compound":
            g["0"] = np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])
        elif kind == "reference":
            g.create_dataset("0", (2,), dtype=h5py.ref_dtype)[0] = f["layers/dense/vars/0"].ref
        elif kind == "complex":
            g["0"] = np.ones((2, 2), "c8")
        else:
            g["0"] = np.void(b"abcd")
    outcome = run("inspect", str(path))
    assert outcome.code == 0, outcome.err
    shown = {"vlen-string": "string", "complex": "complex64"}.get(kind, kind)
    assert f"1 non-numeric tensors not analysed: /layers/odd/vars/0 ({shown})" in outcome.out
    # The numeric tensors are still analysed, and a build completes.
    assert "dense" in outcome.out
    cfg = config_file(tmp_path, path)
    built = run("build", str(cfg), "--quiet", "-j", "1")
    assert built.code == 0, built.err
    stats = json.loads((tmp_path / "report" / "stats.json").read_text())
    assert "non-numeric" in stats["models"][0]["source"]["description"]


def test_compressed_datasets_that_store_nothing_are_refused_fast(tmp_path: Path) -> None:
    path = weights_h5(tmp_path / "m.weights.h5")
    with h5py.File(path, "a") as f:
        for i in range(4):  # 60 MB each declared, no chunk ever written
            f.create_dataset(f"layers/big{i}/vars/0", shape=(15_000_000,), dtype="f4", compression="gzip", chunks=True)
    assert path.stat().st_size < 100_000
    outcome = run("inspect", str(path))
    assert_clean_failure(outcome, 4, "declares 60000000 bytes from 0 compressed bytes")
    assert outcome.seconds < 5


@pytest.mark.slow
def test_safetensors_header_of_empty_tensors_is_refused_fast(tmp_path: Path) -> None:
    header = {f"t.{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(300_000)}
    path = raw_header(tmp_path / "m.safetensors", json.dumps(header).encode())
    outcome = run("inspect", str(path), "--json")
    assert_clean_failure(outcome, 4, "header lists 300000 tensors for 0 bytes of data")
    assert outcome.seconds < 5


# ---------------------------------------------------------------------------- what a message may say


def test_errors_never_quote_file_content(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET * 4)
    prefixed = tmp_path / "secret.bin"  # as if it were safetensors: the u64 "length" is content
    prefixed.write_bytes(SECRET.encode()[:8] + b"{" + SECRET.encode())
    for path in (secret, prefixed):
        for outcome in (run("inspect", str(path)), run("build", str(config_file(tmp_path, path)))):
            line = assert_clean_failure(outcome, 4, str(path))
            assert SECRET[:4] not in line.replace(str(path), "")
            assert SECRET.encode()[:4].hex() not in line
            assert str(int.from_bytes(SECRET.encode()[:8], "little")) not in line


def test_inspect_escapes_names_from_the_file(tmp_path: Path) -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J\rfake row\n"
    path = write_safetensors(tmp_path / "m.safetensors", {f"{evil}.weight": np.ones((2, 2))})
    outcome = run("inspect", str(path))
    assert outcome.code == 0, outcome.err
    assert not any(c in outcome.out for c in "\x1b\x07\r")
    assert "\\x1b[2J\\rfake row\\n" in outcome.out  # the column shows the name's end, escaped
    assert all(not line.startswith("fake row") for line in outcome.out.splitlines())
    as_json = run("inspect", str(path), "--json")
    assert "\x1b" not in as_json.out
    assert json.loads(as_json.out)["tensors"][0]["layer"].startswith("\x1b]0;pwned")


def test_error_lines_escape_names_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    raw_header(path, json.dumps({"\x1b[2Jx": {"dtype": "F32", "shape": [2], "data_offsets": [0, 99]}}).encode())
    line = assert_clean_failure(run("inspect", str(path)), 4, "bad offsets")
    assert "\x1b" not in line


# ---------------------------------------------------------------------------- ONNX external data


def _onnx_with_external(folder: Path, location: str) -> Path:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    tensor = TensorProto(name="fc.weight", data_type=TensorProto.FLOAT, dims=[4])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["fc.weight"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[tensor],
    )
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def test_onnx_external_data_through_a_hard_link_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET.encode()[:16])
    folder = tmp_path / "model"
    folder.mkdir()
    os.link(secret, folder / "weights.bin")
    path = _onnx_with_external(folder, "weights.bin")
    outcome = run("inspect", str(path), "--json")
    assert_clean_failure(outcome, 4, "weights.bin: file has 2 hard links; refused")
    assert outcome.out == ""


def test_onnx_external_data_through_a_symlink_inside_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "real.bin").write_bytes(np.ones(4, "f4").tobytes())
    (folder / "link.bin").symlink_to(folder / "real.bin")
    path = _onnx_with_external(folder, "link.bin")
    assert_clean_failure(run("inspect", str(path)), 4, "symbolic link refused")


def test_onnx_external_data_in_a_plain_file_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.arange(4, dtype="f4").tobytes())
    outcome = run("inspect", str(_onnx_with_external(folder, "w.bin")), "--json")
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["tensors"][0]["stats"]["max"] == 3.0


def test_library_warnings_stay_out_of_the_one_line_error(tmp_path: Path) -> None:
    # In a child process: pytest would capture the warning itself, so the test could not fail here.
    script = """
import sys, warnings
import reportgen.sources.detect as detect
from reportgen.errors import SourceError
def noisy(path, **kwargs):
    warnings.warn("h5py is running against HDF5 with a mismatched version", UserWarning, stacklevel=1)
    raise SourceError(f"{path}: not a weights file (an empty file)")
detect.open_path = noisy
from reportgen.cli import main
sys.exit(main(sys.argv[1:]))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("PYTHONWARNINGS", None)
    args = [sys.executable, "-W", "default", "-c", script, "inspect", str(tmp_path / "x.h5")]
    quiet = subprocess.run(args, capture_output=True, text=True, env=env)
    assert quiet.returncode == 4
    assert quiet.stderr.strip().splitlines() == [
        f"reportgen: error: {tmp_path / 'x.h5'}: not a weights file (an empty file)"
    ]
    verbose = subprocess.run([*args, "--verbose"], capture_output=True, text=True, env=env)
    assert "mismatched version" in verbose.stderr  # shown on request
