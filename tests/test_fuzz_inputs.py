"""Fuzzing the readers' inputs: every input ends with a documented exit code and one line, in bounded time.

The default run tries a few dozen inputs per reader; `make fuzz` (REPORTGEN_FUZZ=long) tries thousands.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hostile import INPUT_CODES, Outcome, keras_archive, raw_header, run, weights_h5, write_safetensors  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

COMMON = {
    "deadline": None,  # the bound below is on each input's own run, checked with a wider margin
    "database": None,  # no .hypothesis folder left in the working tree
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("quick", max_examples=25, derandomize=True, **COMMON)
settings.register_profile("long", max_examples=int(os.environ.get("REPORTGEN_FUZZ_EXAMPLES", "2000")), **COMMON)
settings.load_profile(os.environ.get("REPORTGEN_FUZZ", "quick"))

# A shared 2-core machine runs an input in well under a second; a hang or a quadratic blow-up does not.
TIME_BOUND_S = 20.0


def check(outcome: Outcome, allowed: set[int] = INPUT_CODES) -> None:
    """Assert a documented exit code, one stderr line on failure, no internal error, in bounded time."""
    assert outcome.code in allowed, (outcome.code, outcome.err)
    assert outcome.code != 1
    assert "Traceback" not in outcome.err
    lines = outcome.err.strip().splitlines()
    if outcome.code == 3:  # a config reports all its errors at once, one line each
        assert lines and all(line.startswith("reportgen: error: ") for line in lines), outcome.err
    elif outcome.code:
        assert len(lines) == 1, outcome.err
    assert outcome.seconds < TIME_BOUND_S, outcome.seconds


def _inspect_bytes(name: str, data: bytes) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="rgfuzz-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        return run("inspect", str(path), "--json")


def _flips(size: int, front: int = 4096) -> st.SearchStrategy[list[tuple[int, int]]]:
    """Byte flips, most of them in the first `front` bytes where headers and metadata live."""
    pos = st.one_of(st.integers(0, min(size, front) - 1), st.integers(0, size - 1))
    return st.lists(st.tuples(pos, st.integers(1, 255)), min_size=1, max_size=8)


def _apply(data: bytes, flips: list[tuple[int, int]], cut: int | None = None) -> bytes:
    out = bytearray(data)
    for pos, xor in flips:
        out[pos] ^= xor
    return bytes(out[:cut] if cut is not None else out)


def _sample(make: Callable[[Path], Path]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="rgfuzz-") as folder:
        return make(Path(folder)).read_bytes()


H5 = _sample(lambda d: weights_h5(d / "w.weights.h5"))
KERAS = {
    "stored": _sample(lambda d: keras_archive(d / "m.keras")),
    "deflated": _sample(lambda d: keras_archive(d / "m.keras", compression=zipfile.ZIP_DEFLATED)),
}

# ---------------------------------------------------------------------------- YAML configs

GOOD_CONFIG = """\
title: "Fuzz"
formats: [json]
bins: 20
models:
  - name: a
    path: missing.safetensors
    layers:
      - {index: 1, label: first}
      - {glob: "fc*"}
"""
YAML_BITS = [*list("{}[]:,-?&*!|>'\"%@`#\n\t "), "!!python/object:os.system", "&a", "*a", "? ", "\\0", "!!binary"]


@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(GOOD_CONFIG)), st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=4))),
        max_size=6,
    ),
    tail=st.text(max_size=40),
)
def test_fuzz_yaml_config(edits: list[tuple[int, str]], tail: str) -> None:
    text = GOOD_CONFIG
    for pos, piece in edits:
        text = text[:pos] + piece + text[pos:]
    with tempfile.TemporaryDirectory(prefix="rgfuzz-") as folder:
        cfg = Path(folder) / "c.yaml"
        cfg.write_text(text + tail, encoding="utf-8", errors="surrogatepass")
        check(run("build", str(cfg), "--output", str(Path(folder) / "out"), "-j", "1", "--quiet"))


# ---------------------------------------------------------------------------- safetensors headers

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "C64", "F8_E4M3", "I64", "X9", ""]
ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(DTYPES), JSON_SCALARS),
        "shape": st.one_of(st.lists(st.integers(0, 6), max_size=4), JSON_VALUES),
        "data_offsets": st.one_of(st.lists(st.integers(0, 400), min_size=2, max_size=2), JSON_VALUES),
    }
)


@given(
    header=st.dictionaries(st.text(min_size=1, max_size=12), st.one_of(ENTRY, JSON_VALUES), min_size=0, max_size=6),
    metadata=st.one_of(st.none(), JSON_VALUES),
    data=st.binary(max_size=400),
)
def test_fuzz_safetensors_header(header: dict[str, Any], metadata: Any, data: bytes) -> None:
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    with tempfile.TemporaryDirectory(prefix="rgfuzz-") as folder:
        path = raw_header(Path(folder) / "m.safetensors", json.dumps(header).encode(), data)
        check(run("inspect", str(path), "--json"), {0, 4})


@given(raw=st.binary(max_size=300), data=st.binary(max_size=64))
def test_fuzz_safetensors_raw_header_bytes(raw: bytes, data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="rgfuzz-") as folder:
        path = raw_header(Path(folder) / "m.safetensors", b"{" + raw, data)
        check(run("inspect", str(path), "--json"), {0, 4})


# ---------------------------------------------------------------------------- HDF5, zip, ONNX bytes


@given(flips=_flips(len(H5)), cut=st.one_of(st.none(), st.integers(0, len(H5))))
def test_fuzz_hdf5_bytes(flips: list[tuple[int, int]], cut: int | None) -> None:
    check(_inspect_bytes("w.weights.h5", _apply(H5, flips, cut)), {0, 4})


@pytest.mark.parametrize("kind", sorted(KERAS))
def test_fuzz_keras_zip_bytes(kind: str) -> None:
    clean = KERAS[kind]

    @given(flips=_flips(len(clean), front=len(clean)), cut=st.one_of(st.none(), st.integers(0, len(clean))))
    def one(flips: list[tuple[int, int]], cut: int | None) -> None:
        check(_inspect_bytes("m.keras", _apply(clean, flips, cut)), {0, 4})

    one()


def test_fuzz_onnx_protobuf() -> None:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.linspace(-1, 1, 24, dtype="f4").reshape(4, 6), "fc.weight")
    bias = numpy_helper.from_array(np.zeros(4, "f4"), "fc.bias")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[weight, bias],
    )
    clean = helper.make_model(graph).SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(clean))

    @given(flips=_flips(len(clean), front=len(clean)), cut=st.one_of(st.none(), st.integers(0, len(clean))))
    @example(flips=[(67, 128)], cut=None)  # found by `make fuzz`: a tensor name that is not UTF-8
    def one(flips: list[tuple[int, int]], cut: int | None) -> None:
        check(_inspect_bytes("model.onnx", _apply(clean, flips, cut)), {0, 4})

    one()


# ---------------------------------------------------------------------------- stats.json in diff


@pytest.fixture(scope="module")
def stats_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Return a real stats.json, built from a small safetensors file."""
    import numpy as np

    folder = tmp_path_factory.mktemp("fuzz-stats")
    rng = np.random.default_rng(0)
    model = write_safetensors(folder / "m.safetensors", {"fc.weight": rng.normal(size=(8, 4)), "fc.bias": np.zeros(8)})
    cfg = folder / "c.yaml"
    cfg.write_text(f"title: t\noutput: {folder / 'r'}\nformats: [json]\nmodels:\n  - {{name: m, path: {model}}}\n")
    assert run("build", str(cfg), "--quiet", "-j", "1").code == 0
    doc: dict[str, Any] = json.loads((folder / "r" / "stats.json").read_text())
    return doc


def _replace(doc: Any, steps: list[int], value: Any) -> Any:
    """Return doc with the subtree reached by steps (indices into keys or items) replaced by value."""
    if not steps or not isinstance(doc, dict | list) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[steps[0] % len(keys)]
    out = dict(doc) if isinstance(doc, dict) else list(doc)
    out[key] = _replace(doc[key], steps[1:], value)  # type: ignore[index]
    return out


def test_fuzz_stats_json_in_diff(stats_doc: dict[str, Any]) -> None:
    @given(edits=st.lists(st.tuples(st.lists(st.integers(0, 50), max_size=9), JSON_VALUES), min_size=1, max_size=4))
    def one(edits: list[tuple[list[int], Any]]) -> None:
        doc: Any = stats_doc
        for steps, value in edits:
            doc = _replace(doc, steps, value)
        with tempfile.TemporaryDirectory(prefix="rgfuzz-") as folder:
            old, new = Path(folder) / "old.json", Path(folder) / "new.json"
            old.write_text(json.dumps(stats_doc))
            new.write_text(json.dumps(doc))
            check(run("diff", str(old), str(new), "--quiet"), {0, 4})

    one()
