"""Read an initializer from a Keras layer config entry, as the Keras sources find it."""

from __future__ import annotations

import re
from typing import Any

from reportgen.sources.base import InitSpec

# Keras 2 names of two initializers that Keras 3 folded back into the plain ones.
_ALIASES = {"glorot_uniform_v2": "glorot_uniform", "random_normal_v2": "random_normal"}
_KEEP = ("scale", "mode", "distribution", "mean", "stddev", "minval", "maxval", "value", "gain")


def snake_case(name: str) -> str:
    """Turn a class name into Keras 3's snake case (Conv2D -> conv2d, GlorotUniform -> glorot_uniform)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def spec_from_keras(obj: Any, origin: str = "keras-config") -> InitSpec | None:
    """Read an initializer from a Keras layer config entry (dict or string); None if absent."""
    if obj is None:
        return None
    params: dict[str, Any]
    if isinstance(obj, str):
        kind, params = snake_case(obj) if obj[:1].isupper() else obj, {}
    elif isinstance(obj, dict):
        kind = snake_case(str(obj.get("class_name", "")))
        params = obj.get("config") or {}
    else:
        return None
    kind = _ALIASES.get(kind, kind)
    items = tuple(sorted((k, v) for k, v in params.items() if k in _KEEP and v is not None))
    return InitSpec(kind=kind, params=items, origin=origin)
