"""Build a keras.applications model (random, ImageNet or local weights) and expose its tensors."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import NetworkError, SourceError
from reportgen.initializers import spec_from_keras
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.naming import is_buffer

# Keras variable names -> canonical roles.
_ROLE = {
    "kernel": "kernel",
    "bias": "bias",
    "gamma": "gamma",
    "beta": "beta",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
    "embeddings": "embedding",
    "recurrent_kernel": "recurrent_kernel",
    "depthwise_kernel": "depthwise_kernel",
    "pointwise_kernel": "pointwise_kernel",
}
_INIT_KEY = {
    "kernel": "kernel_initializer",
    "bias": "bias_initializer",
    "gamma": "gamma_initializer",
    "beta": "beta_initializer",
    "moving_mean": "moving_mean_initializer",
    "moving_variance": "moving_variance_initializer",
    "embeddings": "embeddings_initializer",
    "recurrent_kernel": "recurrent_initializer",
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
}
# Keras 3 names a depthwise convolution's one kernel 'kernel' but files its initializer under this key.
_DEPTHWISE_CLASSES = ("DepthwiseConv1D", "DepthwiseConv2D")
_ATTRS = ("use_bias", "activation", "filters", "units", "kernel_size", "strides", "trainable")


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up chatter before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence the C++ start-up logging TensorFlow writes straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def keras_cache_dir() -> Path:
    """Return the folder where Keras caches downloaded weights."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return value.get("class_name") or str(value)
    return value


def describe_layers(model: Any) -> tuple[list[LayerInfo], dict[str, np.ndarray]]:
    """Flatten a built Keras model into LayerInfo records and a key -> array table."""
    arrays: dict[str, np.ndarray] = {}
    infos: list[LayerInfo] = []
    flat: list[tuple[str, Any]] = []

    def walk(m: Any, prefix: str) -> None:
        for layer in m.layers:
            if hasattr(layer, "layers") and layer.layers and layer.__class__.__name__ in ("Functional", "Sequential"):
                walk(layer, f"{prefix}{layer.name}/")
            else:
                flat.append((prefix, layer))

    walk(model, "")
    for index, (prefix, layer) in enumerate(flat):
        config = layer.get_config()
        params = []
        depthwise = layer.__class__.__name__ in _DEPTHWISE_CLASSES
        for var in layer.weights:
            short = var.path.rsplit("/", 1)[-1] if hasattr(var, "path") else var.name
            key = f"{prefix}{layer.name}/{short}"
            arr = np.asarray(var.numpy())
            arrays[key] = arr
            role = _ROLE.get(short, "other")
            shape = tuple(int(d) for d in arr.shape)
            init_key = "depthwise_initializer" if depthwise and short == "kernel" else _INIT_KEY.get(short, "")
            params.append(
                TensorRef(
                    key=key,
                    name=short,
                    role=role,
                    shape=shape,
                    dtype=str(arr.dtype),
                    init=spec_from_keras(config.get(init_key)),
                    # By role, not by the variable's flag: a layer frozen on purpose still holds learned weights.
                    trainable=not is_buffer(short, role, shape, str(arr.dtype)),
                )
            )
        try:
            out_shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            out_shape = None
        feeds: list[str] = []
        for node in getattr(layer, "_outbound_nodes", []) or []:
            op = getattr(node, "operation", None)
            if op is not None and op.name not in feeds:
                feeds.append(op.name)
        attrs = tuple((k, _plain(config[k])) for k in _ATTRS if k in config)
        infos.append(
            LayerInfo(
                name=f"{prefix}{layer.name}",
                class_name=layer.__class__.__name__,
                index=index,
                params=tuple(params),
                type_source="config",
                path=prefix.rstrip("/"),
                output_shape=out_shape,
                feeds=tuple(feeds),
                attrs=attrs,
            )
        )
    return infos, arrays


class InMemorySource(WeightSource):
    """Tensors already in memory, described by LayerInfo records."""

    def __init__(self, info: SourceInfo, layers: list[LayerInfo], arrays: dict[str, np.ndarray]) -> None:
        self.info = info
        self._layers = layers
        self._arrays = arrays

    def layers(self) -> list[LayerInfo]:
        """Return the layers in flat order."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the tensor's array."""
        return self._arrays[ref.key]

    def close(self) -> None:
        """Drop the arrays."""
        self._arrays = {}


def _network_failure(exc: BaseException) -> str | None:
    text = str(exc)
    if "URL fetch failure" in text or "Name or service not known" in text or "urlopen error" in text:
        match = re.search(r"https?://\S+?\.h5", text)
        return match.group(0).rsplit("/", 1)[-1] if match else "the ImageNet weights file"
    return None


def build_application(app: str, weights: str | Path | None, model_name: str, seed: int = 0) -> InMemorySource:
    """Build keras.applications.<app> with random, ImageNet or local weights; read its tensors."""
    quiet_tensorflow()
    with native_stderr_silenced():
        import keras

    factory = getattr(keras.applications, app, None)
    if factory is None:
        raise SourceError(f"model {model_name!r}: keras.applications has no {app!r}")
    if isinstance(weights, Path) and not weights.exists():
        raise SourceError(f"model {model_name!r}: weights file {weights} does not exist")
    # A fixed seed makes an untrained model the same in every build, so reports can be compared byte for byte.
    keras.utils.set_random_seed(seed)
    try:
        with native_stderr_silenced():
            model = factory(weights=str(weights) if isinstance(weights, Path) else weights)
    except Exception as exc:  # keras raises bare Exception for download failures
        missing = _network_failure(exc)
        if missing is not None:
            cache = keras_cache_dir() / missing
            raise NetworkError(
                f"model {model_name!r}: keras.applications.{app} needs ImageNet weights {missing}, which is "
                f"not in {cache.parent} and cannot be downloaded (no network). Download it on a connected "
                f"machine into {cache}, or set weights: /path/to/{missing}"
            ) from None
        raise SourceError(
            f"model {model_name!r}: keras.applications.{app}(weights={weights!r}) failed: {exc}"
        ) from None
    layers, arrays = describe_layers(model)
    if weights is None:
        origin, trained = f"random initialisation (weights=None, seed {seed})", False
    elif weights == "imagenet":
        origin, trained = "ImageNet weights", True
    else:
        origin, trained = f"weights from {Path(str(weights)).name}", None
    files: tuple[Path, ...] = (Path(str(weights)),) if isinstance(weights, Path) else ()
    if weights == "imagenet":
        cached = sorted(keras_cache_dir().glob(f"{app.lower()}*.h5"))
        files = tuple(cached[:1])
    info = SourceInfo(
        format="keras-application",
        description=f"keras.applications.{app}, {origin}",
        files=files,
        trained=trained,
        extra={"keras": keras.__version__, "application": app},
    )
    del model
    return InMemorySource(info, layers, arrays)
