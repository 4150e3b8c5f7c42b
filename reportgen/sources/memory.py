"""Models already in memory: a Keras model, a PyTorch module or state dict, or a mapping of arrays.

Nothing is written to disk and nothing is imported that the caller has not imported already: a
PyTorch object can only exist once torch is loaded, a Keras model once keras is.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from reportgen.errors import SourceError
from reportgen.sources.base import InitSpec, LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.naming import FlatTensor, group_layers, param_role

FRAMEWORK = "framework-default"  # InitSpec.origin of an initializer assumed from the layer type

# Parameter names Keras and Flax use with (..., in, out) kernels; anything else in a plain mapping is torch-like.
_KERAS_PARAMS = {"kernel", "recurrent_kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"}

# Roles of the tensors of PyTorch's normalisation modules.
_NORM_ROLES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
    "num_batches_tracked": "other",
}


def _spec(kind: str, **params: float) -> InitSpec:
    return InitSpec(kind=kind, params=tuple(sorted(params.items())), origin=FRAMEWORK)


KAIMING = _spec("pytorch_default")  # kaiming_uniform_(a=sqrt(5)) on weights, U(+-1/sqrt(fan_in)) on biases
ONES = _spec("ones")
ZEROS = _spec("zeros")
UNIT_NORMAL = _spec("random_normal", mean=0.0, stddev=1.0)
GLOROT = _spec("glorot_uniform")
PRELU = _spec("constant", value=0.25)  # nn.PReLU's default init


def torch_default_inits(family: str, params: Iterable[TensorRef], hidden: int | None = None) -> dict[str, InitSpec]:
    """Return the initializer PyTorch's reset_parameters gives each parameter of a module family.

    family is affine (Linear, Conv*d, ConvTranspose*d), norm (BatchNorm*, InstanceNorm*, LayerNorm,
    GroupNorm, RMSNorm), embedding, rnn (RNN, LSTM, GRU and their cells; hidden is their hidden_size)
    mha (MultiheadAttention) or prelu (PReLU, whose slopes start at 0.25 unless its init argument says otherwise).
    """
    out: dict[str, InitSpec] = {}
    for p in params:
        spec: InitSpec | None = None
        if family == "affine" and p.name in ("weight", "bias"):
            spec = KAIMING
        elif family == "norm":
            spec = {"weight": ONES, "bias": ZEROS, "running_mean": ZEROS, "running_var": ONES}.get(p.name)
        elif family == "embedding" and p.name == "weight":
            spec = UNIT_NORMAL
        elif family == "prelu" and p.name == "weight":
            spec = PRELU
        elif family == "rnn" and hidden:
            bound = 1.0 / math.sqrt(hidden)
            spec = _spec("random_uniform", minval=-bound, maxval=bound)
        elif family == "mha":
            if p.name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                spec = GLOROT
            elif p.name == "in_proj_bias":
                spec = ZEROS
        if spec is not None:
            out[p.name] = spec
    return out


def _torch_role(family: str | None, layer: str, name: str, shape: tuple[int, ...], siblings: list[str]) -> str:
    """Return the role of a module's parameter, from the module's real type where that is known."""
    if family == "norm":
        return _NORM_ROLES.get(name, "other")
    if family == "embedding" and name == "weight":
        return "embedding"
    if family == "affine":
        return "kernel" if name == "weight" else ("bias" if name == "bias" else "other")
    if family == "mha":
        if name.endswith("_weight"):
            return "kernel"
        return "bias" if name.endswith("bias") else "other"
    return param_role(layer, name, shape, siblings)


def with_statement(layers: list[LayerInfo], init: InitSpec | None) -> list[LayerInfo]:
    """Give kernels the stated initializer where none is recorded or only a framework default is assumed."""
    if init is None:
        return layers

    def pick(p: TensorRef) -> TensorRef:
        if p.role == "kernel" and (p.init is None or p.init.origin == FRAMEWORK):
            return dataclasses.replace(p, init=init)
        return p

    return [dataclasses.replace(layer, params=tuple(pick(p) for p in layer.params)) for layer in layers]


class MemorySource(WeightSource):
    """Tensors held by the caller, converted to NumPy one at a time when read."""

    def __init__(
        self,
        info: SourceInfo,
        layers: list[LayerInfo],
        values: Mapping[str, Any],
        convert: Callable[[Any, str], np.ndarray] | None = None,
    ) -> None:
        self.info = info
        self._layers = layers
        self._values = dict(values)
        self._convert = convert

    def layers(self) -> list[LayerInfo]:
        """Return the layers in flat order."""
        return list(self._layers)

    def read(self, ref: TensorRef) -> np.ndarray:
        """Return the tensor as a NumPy array (sharing memory with the caller's tensor where possible)."""
        try:
            value = self._values[ref.key]
        except KeyError:
            raise SourceError(f"in-memory model: tensor {ref.key!r} is gone (the source was closed)") from None
        if self._convert is not None:
            return self._convert(value, ref.key)
        return np.asarray(value)

    def close(self) -> None:
        """Drop the references to the caller's tensors."""
        self._values = {}


# ---------------------------------------------------------------------------- Keras


def is_keras_model(obj: Any) -> bool:
    """Tell whether obj is a Keras model (or layer holding layers), without importing Keras."""
    module = type(obj).__module__ or ""
    return module.split(".")[0] in ("keras", "tf_keras") and hasattr(obj, "layers") and hasattr(obj, "weights")


def from_keras(model: Any, init: InitSpec | None = None) -> MemorySource:
    """Describe a built Keras model's layers and copy its weights, initializers from the layer configs."""
    from reportgen.sources.keras_app import describe_layers

    if not model.weights:
        raise SourceError(
            f"Keras model {model.name!r} has no weights yet: build it first (call it on a batch, "
            "or model.build(input_shape))"
        )
    layers, arrays = describe_layers(model)
    import keras

    info = SourceInfo(
        format="keras-model",
        description=f"in-memory Keras model {model.name!r} ({type(model).__name__}), initializers from its config",
        trained=None,
        extra={"keras": str(keras.__version__)},
    )
    return MemorySource(info, with_statement(layers, init), arrays)


# ---------------------------------------------------------------------------- PyTorch


def _torch() -> Any:
    return sys.modules.get("torch")


def is_torch_module(obj: Any) -> bool:
    """Tell whether obj is a torch.nn.Module."""
    torch = _torch()
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_torch_tensor(obj: Any) -> bool:
    """Tell whether obj is a torch.Tensor."""
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def _stock(module: Any, base: type) -> bool:
    """Whether module keeps base's reset_parameters, so its initial values are PyTorch's defaults."""
    method = getattr(type(module), "reset_parameters", None)
    return method is getattr(base, "reset_parameters", None)


def _module_family(torch: Any, module: Any) -> tuple[str | None, int | None]:
    """Return (family, hidden size) of a module whose default initialisation is known."""
    nn = torch.nn
    affine = (nn.Linear, nn.modules.conv._ConvNd)
    norms = tuple(
        c
        for c in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None))
        if c is not None
    )
    for bases, family in ((affine, "affine"), (norms, "norm"), ((nn.Embedding, nn.EmbeddingBag), "embedding")):
        for base in bases:
            if isinstance(module, base):
                # A subclass with its own reset_parameters draws something else.
                return (family if _stock(module, base) else None), None
    for base in (nn.RNNBase, nn.modules.rnn.RNNCellBase):
        if isinstance(module, base):
            return ("rnn" if _stock(module, base) else None), int(module.hidden_size)
    if isinstance(module, nn.MultiheadAttention):
        return "mha", None
    if isinstance(module, nn.PReLU):
        return "prelu", None
    return None, None


def _torch_convert(torch: Any) -> Callable[[Any, str], np.ndarray]:
    from reportgen.sources.torch_file import to_numpy

    def convert(tensor: Any, key: str) -> np.ndarray:
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.cpu()  # one tensor at a time: the model stays where it is
        return to_numpy(torch, t, f"in-memory tensor {key!r}")

    return convert


def _torch_ref(torch: Any, key: str, name: str, role: str, tensor: Any, trainable: bool) -> TensorRef:
    from reportgen.sources.torch_file import numpy_dtype_name

    return TensorRef(
        key=key,
        name=name,
        role=role,
        shape=tuple(int(d) for d in tensor.shape),
        dtype=numpy_dtype_name(torch, tensor, f"in-memory tensor {key!r}"),
        layout="torch",
        trainable=trainable,
    )


def from_torch_module(module: Any, init: InitSpec | None = None) -> MemorySource:
    """Describe an nn.Module layer by layer: real module types, PyTorch's default initializers."""
    torch = _torch()
    assert torch is not None
    values: dict[str, Any] = {}
    layers: list[LayerInfo] = []
    # nn.Transformer re-draws every matrix with xavier_uniform_, whatever its sub-modules did.
    xavier_roots = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Transformer)]
    zero_bias: set[str] = set()
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.MultiheadAttention) and m.in_proj_bias is not None:
            zero_bias.add(f"{name}.out_proj.bias" if name else "out_proj.bias")  # MHA zeroes its output bias
        tensors = [(n, t, True) for n, t in m.named_parameters(recurse=False)]
        tensors += [(n, t, False) for n, t in m.named_buffers(recurse=False) if t is not None]
        has_children = any(True for _ in m.children())
        if not tensors and has_children:
            continue  # a container: its layers are listed themselves
        if not name and has_children:
            # Tensors registered on the root module are each a layer of their own, as in a state dict.
            for n, t, trainable in tensors:
                values[n] = t
                ref = _torch_ref(torch, n, n, param_role(n, n, tuple(t.shape), [n]), t, trainable)
                layers.append(LayerInfo(name=n, class_name=type(m).__name__, index=len(layers), params=(ref,), path=n))
            continue
        family, hidden = _module_family(torch, m)
        siblings = [n for n, _, _ in tensors]
        refs = []
        for n, t, trainable in tensors:
            key = f"{name}.{n}" if name else n
            values[key] = t
            refs.append(_torch_ref(torch, key, n, _torch_role(family, name, n, tuple(t.shape), siblings), t, trainable))
        inits = torch_default_inits(family, refs, hidden) if family else {}
        under_transformer = any(name == r or name.startswith(f"{r}.") for r in xavier_roots)
        final = []
        for ref in refs:
            spec = inits.get(ref.name)
            if under_transformer and len(ref.shape) > 1 and ref.trainable:
                spec = GLOROT
            if ref.key in zero_bias:
                spec = ZEROS
            final.append(dataclasses.replace(ref, init=spec))
        layers.append(
            LayerInfo(
                name=name or type(m).__name__,
                class_name=type(m).__name__,
                index=len(layers),
                params=tuple(final),
                path=(name or type(m).__name__).replace(".", "/"),
            )
        )
    if not values:
        raise SourceError(f"PyTorch module {type(module).__name__}: it has no parameters or buffers")
    info = SourceInfo(
        format="pytorch-module",
        description=(
            f"in-memory PyTorch module {type(module).__name__} ({len(values)} tensors), "
            "initializers from PyTorch's defaults per module type"
        ),
        trained=None,
        extra={"torch": str(torch.__version__)},
    )
    return MemorySource(info, with_statement(layers, init), values, _torch_convert(torch))


# Layer types inferred from state-dict names and shapes, and the default initialisation of each.
_INFERRED_FAMILY = {
    "Linear": "affine",
    "Conv1d": "affine",
    "Conv2d": "affine",
    "Conv3d": "affine",
    "BatchNorm": "norm",
    "LayerNorm": "norm",
    "RMSNorm": "norm",
    "GroupNorm": "norm",
    "Embedding": "embedding",
    "LSTM": "rnn",
    "GRU": "rnn",
    "RNN": "rnn",
    "PReLU": "prelu",
}


def from_state_dict(state: Mapping[str, Any], init: InitSpec | None = None) -> MemorySource:
    """Describe a PyTorch state dict: layers grouped by name, types inferred, PyTorch's default inits."""
    torch = _torch()
    assert torch is not None
    flat = []
    tensors: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not is_torch_tensor(value):
            raise SourceError(f"state dict entry {key!r}: a {type(value).__name__}, not a torch.Tensor")
        tensors[key] = value
        dtype = _torch_ref(torch, key, key, "other", value, True).dtype
        flat.append(FlatTensor(key, tuple(int(d) for d in value.shape), dtype))
    layers = []
    for layer in group_layers(flat, layout="torch", order="appearance"):
        family = _INFERRED_FAMILY.get(layer.class_name)
        hh = layer.param("recurrent_kernel")
        hidden = hh.shape[1] if hh is not None and len(hh.shape) == 2 else None
        inits = torch_default_inits(family, layer.params, hidden) if family else {}
        params = tuple(
            dataclasses.replace(
                p,
                init=inits.get(p.name),
                trainable=p.trainable and p.name not in ("running_mean", "running_var", "num_batches_tracked"),
            )
            for p in layer.params
        )
        layers.append(dataclasses.replace(layer, params=params))
    info = SourceInfo(
        format="pytorch-state-dict",
        description=(
            f"in-memory PyTorch state dict ({len(tensors)} tensors), layer types inferred from names and "
            "shapes, initializers from PyTorch's defaults for those types"
        ),
        trained=None,
        extra={"torch": str(torch.__version__)},
    )
    return MemorySource(info, with_statement(layers, init), tensors, _torch_convert(torch))


# ---------------------------------------------------------------------------- plain arrays


def _flatten(mapping: Mapping[Any, Any], prefix: str, out: dict[str, Any]) -> None:
    """Flatten nested mappings (Flax-style parameter trees) into dotted names."""
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise SourceError(f"array mapping: key {key!r} is not a string")
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            _flatten(value, name, out)
        else:
            out[name] = value


def from_arrays(mapping: Mapping[str, Any], init: InitSpec | None = None) -> MemorySource:
    """Describe a mapping of name -> array (nested mappings allowed); layers grouped by name."""
    flat_values: dict[str, Any] = {}
    _flatten(mapping, "", flat_values)
    if not flat_values:
        raise SourceError("array mapping: it holds no arrays")
    arrays: dict[str, np.ndarray] = {}
    flat = []
    for key, value in flat_values.items():
        try:
            arr = np.asarray(value)
        except Exception as exc:  # any object can fail to convert; say which one
            raise SourceError(f"array mapping: {key!r}: cannot be read as an array ({exc})") from None
        if arr.dtype.kind not in "biufcV" and arr.dtype.name not in ("bfloat16",):
            raise SourceError(f"array mapping: {key!r}: a {type(value).__name__} of dtype {arr.dtype}, not numbers")
        arrays[key] = arr
        cut = max(key.rfind("."), key.rfind("/"))
        layer, param = (key[:cut], key[cut + 1 :]) if cut > 0 and cut < len(key) - 1 else (key, key)
        layout = "keras" if param in _KERAS_PARAMS else "torch"
        flat.append(
            FlatTensor(key, tuple(int(d) for d in arr.shape), str(arr.dtype), layer=layer, param=param, layout=layout)
        )
    layers = group_layers(flat, layout="torch", order="appearance")
    info = SourceInfo(
        format="arrays",
        description=f"in-memory mapping of {len(arrays)} arrays, layer types inferred from names and shapes",
        trained=None,
    )
    return MemorySource(info, with_statement(layers, init), arrays)


def open_object(obj: Any, init: InitSpec | None = None) -> MemorySource:
    """Open an in-memory model of any supported kind: Keras model, nn.Module, state dict or arrays."""
    if isinstance(obj, WeightSource):
        raise SourceError("already a WeightSource; pass the model itself")
    if is_keras_model(obj):
        return from_keras(obj, init)
    if is_torch_module(obj):
        return from_torch_module(obj, init)
    if isinstance(obj, Mapping):
        if obj and all(is_torch_tensor(v) for v in obj.values()):
            return from_state_dict(obj, init)
        return from_arrays(obj, init)
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise SourceError(
        f"cannot analyse a {kind}: give a Keras model, a torch.nn.Module, a state dict, "
        "or a mapping of name -> array (or a path to a weights file)"
    )
