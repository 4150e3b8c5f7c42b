"""Pick the layers and parameters a config asks for: index, name, glob, type or role."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from reportgen.config import ROLE_RE, LayerSelector
from reportgen.errors import SelectionError
from reportgen.layer_kinds import is_normalization
from reportgen.sources.base import LayerInfo, TensorRef

# Words for layer types in titles ("weights in first convolutional layer").
FRIENDLY = {
    "Conv1D": "1-D convolutional",
    "Conv2D": "convolutional",
    "Conv3D": "3-D convolutional",
    "Conv1d": "1-D convolutional",
    "Conv2d": "convolutional",
    "Conv3d": "3-D convolutional",
    "Conv": "convolutional",
    "DepthwiseConv2D": "depthwise convolutional",
    "SeparableConv2D": "separable convolutional",
    "Dense": "fully connected",
    "Linear": "fully connected",
    "Gemm": "fully connected",
    "BatchNormalization": "batch-norm",
    "BatchNorm": "batch-norm",
    "LayerNorm": "layer-norm",
    "LayerNormalization": "layer-norm",
    "MatMul": "matrix-multiply",
    "LSTM": "LSTM",
    "Embedding": "embedding",
}


@dataclass(frozen=True)
class Selected:
    """A layer picked by a selector, the parameters to show, and words for its titles."""

    layer: LayerInfo
    params: tuple[TensorRef, ...]
    label: str  # e.g. "first convolutional" or the layer name
    selector: str  # how it was picked, e.g. "index -6"


def friendly(class_name: str) -> str:
    """Return words for a layer type, e.g. Conv2D -> convolutional."""
    return FRIENDLY.get(class_name, class_name)


def _pick_params(layer: LayerInfo, wanted: list[str]) -> tuple[TensorRef, ...]:
    if "all" in wanted:
        return layer.params
    return tuple(p for p in layer.params if p.name in wanted or p.role in wanted)


def _fallback_params(layer: LayerInfo) -> tuple[TensorRef, ...]:
    """Return what a default selection shows of a layer that has no kernel or bias: its trainable tensors."""
    trained = tuple(p for p in layer.params if p.trainable)
    return trained or layer.params


def _with_weights(layers: list[LayerInfo]) -> list[LayerInfo]:
    return [layer for layer in layers if layer.params]


def _learned(layers: list[LayerInfo]) -> list[LayerInfo]:
    """Return layers with a trainable tensor, or all layers with weights when none has one."""
    # A conv that only holds a fixed basis (an STFT buffer) is not what "first convolutional" means.
    return [layer for layer in layers if any(p.trainable for p in layer.params)] or _with_weights(layers)


def default_selectors(layers: list[LayerInfo]) -> list[LayerSelector]:
    """Return first/last of each weighted convolution and dense type present, in depth order."""
    seen: list[str] = []
    for layer in _learned(layers):
        kind = layer.class_name
        if kind in FRIENDLY and not is_normalization(kind) and kind not in seen:
            seen.append(kind)
    out: list[LayerSelector] = []
    for t in seen:
        out.append(LayerSelector(role=f"first {t}"))
        if sum(1 for layer in _learned(layers) if layer.class_name == t) > 1:
            out.append(LayerSelector(role=f"last {t}"))
    if not out and _with_weights(layers):
        first, last = _learned(layers)[0], _learned(layers)[-1]
        out = [LayerSelector(name=first.name)] + ([LayerSelector(name=last.name)] if last != first else [])
    return out


def _match(sel: LayerSelector, layers: list[LayerInfo], model: str, where: str) -> tuple[list[LayerInfo], str]:
    """Return the layers one selector picks and the label words it implies."""
    n = len(layers)
    if sel.index is not None:
        if not -n <= sel.index < n:
            raise SelectionError(
                f"{where}: index {sel.index} is out of range: model {model!r} has {n} layers "
                f"(valid indexes {-n}..{n - 1})"
            )
        layer = layers[sel.index]
        if not layer.params:
            raise SelectionError(
                f"{where}: index {sel.index} is layer {layer.name!r} ({layer.class_name}), which has no weights"
            )
        return [layer], layer.name
    if sel.name is not None:
        found = [layer for layer in layers if layer.name == sel.name]
        if not found:
            near = difflib.get_close_matches(sel.name, [layer.name for layer in layers], n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise SelectionError(f"{where}: model {model!r} has no layer named {sel.name!r}{hint}")
        return found, sel.name
    if sel.glob is not None:
        found = [layer for layer in _with_weights(layers) if fnmatch.fnmatchcase(layer.name, sel.glob)]
        if not found:
            sample = ", ".join(layer.name for layer in _with_weights(layers)[:4])
            raise SelectionError(
                f"{where}: glob {sel.glob!r} selects no layer with weights in model {model!r} "
                f"(names look like: {sample})"
            )
        return found, sel.glob
    kind, order = sel.type, "all"
    if sel.role is not None:
        m = ROLE_RE.match(sel.role.strip())
        assert m is not None  # the schema checked the form
        order, kind = m.group(1), m.group(2)
    assert kind is not None
    found = [layer for layer in _learned(layers) if layer.class_name.lower() == kind.lower()]
    found = found or [layer for layer in _with_weights(layers) if layer.class_name.lower() == kind.lower()]
    if not found:
        types = sorted({layer.class_name for layer in _with_weights(layers)})
        raise SelectionError(
            f"{where}: model {model!r} has no {kind} layer with weights (types present: {', '.join(types)})"
        )
    if order == "first":
        return found[:1], f"first {friendly(found[0].class_name)}"
    if order == "last":
        return found[-1:], f"last {friendly(found[-1].class_name)}"
    return found, friendly(found[0].class_name)


def select(
    layers: list[LayerInfo],
    selectors: list[LayerSelector] | None,
    default_params: list[str],
    model: str,
    where: str = "",
) -> list[Selected]:
    """Apply selectors in order; a layer picked twice keeps its first label. where prefixes errors."""
    explicit = selectors is not None
    chosen: list[Selected] = []
    taken: set[str] = set()
    for i, sel in enumerate(selectors if selectors is not None else default_selectors(layers)):
        loc = f"{where}layers[{i}]" if explicit else f"{where}default selection"
        found, label = _match(sel, layers, model, loc)
        wanted = sel.params if sel.params is not None else default_params
        for layer in found:
            if layer.name in taken:
                continue
            params = _pick_params(layer, wanted)
            if not params and not explicit:
                # A default must never fail: an Embedding, a bias-free SeparableConv2D or a buffer-only
                # layer shows what it has instead of the kernel and bias it lacks.
                params = _fallback_params(layer)
            if not params:
                have = ", ".join(p.name for p in layer.params)
                raise SelectionError(
                    f"{loc}: layer {layer.name!r} has none of the parameters {wanted} (it has: {have})"
                )
            taken.add(layer.name)
            single = len(found) == 1 and sel.label is None
            text = sel.label or (label if single else layer.name)
            chosen.append(Selected(layer, params, text, sel.describe()))
    return chosen
