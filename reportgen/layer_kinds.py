"""The layer class names every stage recognises, from Keras, PyTorch and ONNX, and the groups they form."""

from __future__ import annotations

from typing import Literal

# Normalisations that subtract a per-channel mean over the batch, cancelling any per-channel bias before them.
BATCH_NORMS = frozenset(
    {
        "BatchNormalization",  # Keras, and ONNX BatchNormalization nodes
        "SyncBatchNormalization",  # Keras's multi-device BatchNorm
        "BatchNormalization_",
        "BatchNorm",  # PyTorch files, where tensor names give the type
        "BatchNorm1d",  # PyTorch modules in memory
        "BatchNorm2d",
        "BatchNorm3d",
        "SyncBatchNorm",
    }
)
LAYER_NORMS = frozenset({"LayerNormalization", "LayerNorm"})
# Plain convolutions hold one kernel named "kernel"/"weight"; depthwise and separable ones are listed
# apart because their kernels carry other roles (depthwise_kernel, pointwise_kernel).
PLAIN_CONVS = frozenset({"Conv1D", "Conv2D", "Conv3D", "Conv1d", "Conv2d", "Conv3d", "Conv"})
CONVS = PLAIN_CONVS | {"DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"}
DENSES = frozenset({"Dense", "Linear", "Gemm"})

TrendFamily = Literal["convolutional", "fully connected"]
TREND_FAMILIES: tuple[TrendFamily, ...] = ("convolutional", "fully connected")


def is_batchnorm(class_name: str) -> bool:
    """Return True for batch normalisation, which makes a preceding bias redundant."""
    return class_name in BATCH_NORMS


def is_normalization(class_name: str) -> bool:
    """Return True for batch and layer normalisation of any framework."""
    return class_name in BATCH_NORMS or class_name in LAYER_NORMS


def is_conv(class_name: str) -> bool:
    """Return True for any convolution, depthwise and separable ones included."""
    return class_name in CONVS


def trend_family(class_name: str) -> TrendFamily | None:
    """Return the family a depth trend pools this layer's kernel with, or None (one rule for figure and finding)."""
    if class_name in PLAIN_CONVS:
        return "convolutional"
    if class_name in DENSES:
        return "fully connected"
    return None
