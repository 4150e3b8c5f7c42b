"""The seed analysis done by hand, the way a notebook would: Keras models, printed numbers, pyplot PNGs.

Builds untrained VGG-16 and ResNet50 with Keras, prints shape, mean, std, variance, min and max of the
kernel and bias of the eight layers the analysis looks at, draws a histogram of each kernel, scatters the
mean |w| of every convolution kernel by depth for both models, and saves every figure as a PNG. This is
the baseline `make bench` holds `reportgen build bench/seed.yaml` against; it is written for speed the
way a person would write it, with nothing to make it slower.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# (model, layer index, label): the post's first/last convolution and dense layers.
LAYERS = (
    ("VGG16", 1, "first convolutional"),
    ("VGG16", -6, "last convolutional"),
    ("VGG16", -3, "first fully connected"),
    ("VGG16", -1, "last fully connected"),
    ("ResNet50", 2, "first convolutional"),
    ("ResNet50", 25, "middle convolutional"),
    ("ResNet50", -6, "last convolutional"),
    ("ResNet50", -1, "fully connected"),
)


def describe(values, what: str) -> None:  # type: ignore[no-untyped-def]
    """Print the five numbers the analysis reads for one tensor."""
    import numpy as np

    print(what, "shape", values.shape)
    print("  mean", np.mean(values), "std", np.std(values), "var", np.var(values))
    print("  min", np.min(values), "max", np.max(values))


def main(out: Path) -> None:
    """Run the analysis by hand, writing PNGs into out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    models = {name: getattr(keras.applications, name)(weights=None) for name in ("VGG16", "ResNet50")}
    for name, index, label in LAYERS:
        kernel, bias = models[name].layers[index].get_weights()[:2]
        describe(kernel, f"{name} {label} weights")
        describe(bias, f"{name} {label} biases")
        plt.figure(figsize=(8, 6))
        plt.hist(kernel.ravel(), rwidth=0.9)
        plt.title(f"{name} {label}: weights")
        plt.xlabel("value")
        plt.ylabel("count")
        plt.savefig(out / f"{name}_{index}.png")
        plt.close()
    for name, model in models.items():
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        means = [float(np.mean(np.abs(layer.get_weights()[0]))) for layer in convs]
        plt.figure(figsize=(8, 8))
        plt.scatter(range(len(means)), means)
        plt.title(f"mean |w| by convolution in {name}")
        plt.xlabel("convolutional layer number")
        plt.ylabel("mean |w|")
        plt.savefig(out / f"{name}_depth.png")
        plt.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".bench/post_way"))
