"""Small weights files built without TensorFlow, and a way to run the CLI and read its one line."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from reportgen.cli import main

# Documented exit codes a hostile or careless input may end with (README exit-code table).
INPUT_CODES = {0, 3, 4, 5, 7}


@dataclass
class Outcome:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def line(self) -> str:
        """Return the single stderr line (asserting there is exactly one)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def run(*args: str) -> Outcome:
    """Run reportgen in this process with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


def assert_clean_failure(outcome: Outcome, code: int, *needles: str) -> str:
    """Check a run ended with code and one line holding every needle; return the line."""
    assert outcome.code == code, (outcome.code, outcome.err)
    line = outcome.line
    assert "internal error" not in line and "Traceback" not in outcome.err
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """Write float32 tensors in the safetensors layout."""
    header, blobs, offset = {}, [], 0
    for name, values in tensors.items():
        arr = np.ascontiguousarray(values, dtype="<f4")
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw_header(path, json.dumps(header).encode(), b"".join(blobs))
    return path


def raw_header(path: Path, header: bytes, data: bytes = b"") -> Path:
    """Write a safetensors file from raw header bytes (padded with spaces) and data."""
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def weights_h5(path: Path, units: int = 8, inputs: int = 4) -> Path:
    """Write a Keras 3 .weights.h5 for one Dense layer (kernel and bias)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        group = f.create_group("layers/dense/vars")
        group.attrs["name"] = "dense"
        group["0"] = rng.uniform(-0.5, 0.5, (inputs, units)).astype("f4")
        group["1"] = np.zeros(units, "f4")
    return path


def dense_config(units: int = 8, inputs: int = 4) -> dict[str, object]:
    """Return a Keras 3 Sequential config with one Dense layer."""
    return {
        "class_name": "Sequential",
        "config": {
            "name": "seq",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_shape": [None, inputs], "name": "input"}},
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "dense",
                        "units": units,
                        "use_bias": True,
                        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                    },
                },
            ],
        },
    }


def keras_archive(
    path: Path,
    *,
    config: bytes | None = None,
    compression: int = zipfile.ZIP_STORED,
    units: int = 8,
    inputs: int = 4,
) -> Path:
    """Write a .keras zip (config.json, metadata.json, model.weights.h5) as Keras 3 lays it out."""
    h5 = weights_h5(path.with_suffix(".tmp.h5"), units, inputs)
    weights = h5.read_bytes()
    h5.unlink()
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        zf.writestr("config.json", config if config is not None else json.dumps(dense_config(units, inputs)))
        zf.writestr("model.weights.h5", weights)
    return path


def config_file(folder: Path, model_path: Path | str, out: Path | None = None, extra: str = "") -> Path:
    """Write a config naming one model file; return its path."""
    cfg = folder / "c.yaml"
    target = out if out is not None else folder / "report"
    model = json.dumps(str(model_path))
    cfg.write_text(f"title: t\noutput: {target}\nformats: [json]\n{extra}models:\n  - name: m\n    path: {model}\n")
    return cfg
