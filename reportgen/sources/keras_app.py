"""Build a keras.applications model (random, ImageNet or local weights) and expose its tensors."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import NetworkError, SourceError
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.keras_config import initializer_key
from reportgen.sources.keras_init import spec_from_keras
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
# Keras 3 names a depthwise convolution's one kernel 'kernel' but files its initializer under this key.
_DEPTHWISE_CLASSES = ("DepthwiseConv1D", "DepthwiseConv2D")
_ATTRS = ("use_bias", "activation", "filters", "units", "kernel_size", "strides", "trainable")

# (file name in ~/.keras/models, URL) of each application's ImageNet weights with the top, as
# keras.applications 3.x asks keras.utils.get_file for them (captured from Keras 3.15 with get_file replaced).
IMAGENET_FILES: dict[str, tuple[str, str]] = {
    "ConvNeXtBase": (
        "convnext_base.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/convnext/convnext_base.h5",
    ),
    "ConvNeXtLarge": (
        "convnext_large.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/convnext/convnext_large.h5",
    ),
    "ConvNeXtSmall": (
        "convnext_small.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/convnext/convnext_small.h5",
    ),
    "ConvNeXtTiny": (
        "convnext_tiny.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/convnext/convnext_tiny.h5",
    ),
    "ConvNeXtXLarge": (
        "convnext_xlarge.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/convnext/convnext_xlarge.h5",
    ),
    "DenseNet121": (
        "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet121_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "DenseNet169": (
        "densenet169_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet169_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "DenseNet201": (
        "densenet201_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet201_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "EfficientNetB0": (
        "efficientnetb0.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
    ),
    "EfficientNetB1": (
        "efficientnetb1.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb1.h5",
    ),
    "EfficientNetB2": (
        "efficientnetb2.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb2.h5",
    ),
    "EfficientNetB3": (
        "efficientnetb3.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb3.h5",
    ),
    "EfficientNetB4": (
        "efficientnetb4.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb4.h5",
    ),
    "EfficientNetB5": (
        "efficientnetb5.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb5.h5",
    ),
    "EfficientNetB6": (
        "efficientnetb6.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb6.h5",
    ),
    "EfficientNetB7": (
        "efficientnetb7.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb7.h5",
    ),
    "EfficientNetV2B0": (
        "efficientnetv2-b0.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b0.h5",
    ),
    "EfficientNetV2B1": (
        "efficientnetv2-b1.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b1.h5",
    ),
    "EfficientNetV2B2": (
        "efficientnetv2-b2.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b2.h5",
    ),
    "EfficientNetV2B3": (
        "efficientnetv2-b3.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-b3.h5",
    ),
    "EfficientNetV2L": (
        "efficientnetv2-l.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-l.h5",
    ),
    "EfficientNetV2M": (
        "efficientnetv2-m.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-m.h5",
    ),
    "EfficientNetV2S": (
        "efficientnetv2-s.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/efficientnetv2-s.h5",
    ),
    "InceptionResNetV2": (
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "InceptionV3": (
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "MobileNet": (
        "mobilenet_1_0_224_tf.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/mobilenet_1_0_224_tf.h5",
    ),
    "MobileNetV2": (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
    ),
    "MobileNetV3Large": (
        "weights_mobilenet_v3_large_224_1.0_float.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float.h5",
    ),
    "MobileNetV3Small": (
        "weights_mobilenet_v3_small_224_1.0_float.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5",
    ),
    "NASNetLarge": (
        "nasnet_large.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/NASNet-large.h5",
    ),
    "NASNetMobile": (
        "nasnet_mobile.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/NASNet-mobile.h5",
    ),
    "ResNet101": (
        "resnet101_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet101_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "ResNet101V2": (
        "resnet101v2_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "ResNet152": (
        "resnet152_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet152_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "ResNet152V2": (
        "resnet152v2_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet152v2_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "ResNet50": (
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "ResNet50V2": (
        "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "VGG16": (
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "VGG19": (
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    ),
    "Xception": (
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
    ),
}


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


def describe_layers(model: Any, values: bool = True) -> tuple[list[LayerInfo], dict[str, np.ndarray]]:
    """Flatten a built Keras model into LayerInfo records and a key -> array table (empty without values)."""
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
            if values:
                arr = np.asarray(var.numpy())
                arrays[key] = arr
                shape, dtype = tuple(int(d) for d in arr.shape), str(arr.dtype)
            else:
                shape, dtype = tuple(int(d) for d in var.shape), str(np.dtype(var.dtype))
            role = _ROLE.get(short, "other")
            init_key = "depthwise_initializer" if depthwise and short == "kernel" else initializer_key(short)
            params.append(
                TensorRef(
                    key=key,
                    name=short,
                    role=role,
                    shape=shape,
                    dtype=dtype,
                    init=spec_from_keras(config.get(init_key)),
                    # By role, not by the variable's flag: a layer frozen on purpose still holds learned weights.
                    trainable=not is_buffer(short, role, shape, dtype),
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


def imagenet_file(app: str) -> tuple[str, str] | None:
    """Return (file name in the Keras cache, download URL) of an application's ImageNet weights (with top)."""
    return IMAGENET_FILES.get(app)


def network_reachable(url: str, timeout: float = 5.0) -> bool:
    """Tell whether url answers, asked the way Keras downloads (urllib, so proxies apply the same)."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):  # noqa: S310
            return True
    except Exception:  # DNS, refused, timeout, HTTP errors: Keras could not download either
        return False


def check_imagenet_cache(wanted: list[tuple[str, str, str]]) -> None:
    """Raise NetworkError naming every missing ImageNet file of [(config location, model, app)] when offline.

    Keras downloads a missing file itself when the network is there; without one, it would fail on the
    first model only, after building it. Checking the cache first names every file at once, in one line
    with the one command that fetches them all on a connected machine.
    """
    cache = keras_cache_dir()
    needs: list[str] = []
    missing: dict[str, str] = {}  # file name -> url
    for where, model, app in wanted:
        known = imagenet_file(app)
        if known is None or (cache / known[0]).is_file():
            continue
        needs.append(f"{where}: model {model!r} (keras.applications.{app}) needs ImageNet weights {known[0]}")
        missing[known[0]] = known[1]
    if not missing or network_reachable(next(iter(missing.values()))):
        return
    fetch = " && ".join(f"curl -fL --create-dirs -o {cache / name} {url}" for name, url in missing.items())
    raise NetworkError(
        f"{'; '.join(needs)}; {'it is' if len(missing) == 1 else 'none of them is'} in the Keras cache {cache} "
        f"and there is no network to download {'it' if len(missing) == 1 else 'them'}. On a connected machine run "
        f"`{fetch}`, then copy {'the file' if len(missing) == 1 else 'the files'} into {cache} here, "
        "or set weights: to a local copy"
    )


def _network_failure(exc: BaseException) -> str | None:
    text = str(exc)
    if "URL fetch failure" in text or "Name or service not known" in text or "urlopen error" in text:
        match = re.search(r"https?://\S+?\.h5", text)
        return match.group(0).rsplit("/", 1)[-1] if match else "the ImageNet weights file"
    return None


def _unbuilt_layers(factory: Any) -> list[LayerInfo] | None:
    """Return the layers of factory(weights=None) built without values; None where Keras cannot defer them."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.backend.common.stateless_scope import StatelessScope
    except ImportError:
        return None
    try:
        # Variables created in a stateless scope keep their initializer and shape but get no value.
        with native_stderr_silenced(), StatelessScope(initialize_variables=False):
            model = factory(weights=None)
        layers, _ = describe_layers(model, values=False)
    finally:
        # Keras keeps deferred variables in a global list that a later scope would initialise.
        global_state.set_global_attribute("uninitialized_variables", [])
    return layers


# Given an untrained application's layers (no values) and its description, returns a source that
# draws its tensors, or None where one of them cannot be drawn.
Draw = Callable[[list[LayerInfo], SourceInfo], WeightSource | None]


def _draw_application(factory: Any, app: str, seed: int, version: str, draw: Draw) -> WeightSource | None:
    """Describe an untrained application whose values are drawn on demand; None to build it with values."""
    try:
        layers = _unbuilt_layers(factory)
    except Exception:  # the full build below reports the failure with its message
        return None
    if layers is None:
        return None
    info = SourceInfo(
        format="keras-application",
        description=(
            f"keras.applications.{app}, random initialisation (weights=None): each tensor drawn from its "
            f"layer's initializer, seed {seed}"
        ),
        files=(),
        trained=False,
        extra={"keras": version, "application": app},
    )
    return draw(layers, info)


def build_application(
    app: str, weights: str | Path | None, model_name: str, seed: int = 0, draw: Draw | None = None
) -> WeightSource:
    """Build keras.applications.<app> with random, ImageNet or local weights; read its tensors.

    With draw, an untrained application (weights None) is built without values where Keras allows it
    and draw makes the source of its tensors, so no copy of the model is held.
    """
    quiet_tensorflow()
    try:
        with native_stderr_silenced():
            import keras
    except ImportError:
        raise SourceError(
            f"model {model_name!r}: keras.applications needs the optional extra: pip install 'reportgen[keras]'"
        ) from None

    factory = getattr(keras.applications, app, None)
    if factory is None:
        raise SourceError(f"model {model_name!r}: keras.applications has no {app!r}")
    if isinstance(weights, Path) and not weights.exists():
        raise SourceError(f"model {model_name!r}: weights file {weights} does not exist")
    # A fixed seed makes an untrained model the same in every build, so reports can be compared byte for byte.
    keras.utils.set_random_seed(seed)
    if weights is None and draw is not None:
        drawn = _draw_application(factory, app, seed, keras.__version__, draw)
        if drawn is not None:
            return drawn
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
        known = imagenet_file(app)
        cached = keras_cache_dir() / known[0] if known else None
        files = (cached,) if cached is not None and cached.is_file() else ()
    info = SourceInfo(
        format="keras-application",
        description=f"keras.applications.{app}, {origin}",
        files=files,
        trained=trained,
        extra={"keras": keras.__version__, "application": app},
    )
    del model
    return InMemorySource(info, layers, arrays)
