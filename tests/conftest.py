"""Shared fixtures: small Keras models trained on scikit-learn's digits, built once per session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reportgen.cli import main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01, so reports are reproducible


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
