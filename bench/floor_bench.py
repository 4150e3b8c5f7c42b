"""CPU time of the largest spectra of the seed analysis on one core: what bounds its analysis wall time."""

from __future__ import annotations

import json
import time

import numpy as np


def main() -> dict[str, float]:
    """Time VGG-16's fc1 and fc2 spectra, and their parts, with one BLAS thread as every worker uses."""
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    from reportgen.init_draw import DrawnSource
    from reportgen.sources.base import InitSpec, TensorRef
    from reportgen.spectral import _gram_2d, spectral_metrics

    source = DrawnSource(0)
    fc1 = source.read(TensorRef("fc1/kernel", "kernel", "kernel", (25088, 4096), "float32", InitSpec("glorot_uniform")))
    fc2 = source.read(TensorRef("fc2/kernel", "kernel", "kernel", (4096, 4096), "float32", InitSpec("glorot_uniform")))
    out: dict[str, float] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        t = time.process_time()
        g = _gram_2d(lambda step: (fc1[i : i + step] for i in range(0, fc1.shape[0], step)), *fc1.shape, np.dtype("f4"))
        out["fc1_gram_s"] = time.process_time() - t
        assert g is not None
        t = time.process_time()
        scipy.linalg.eigvalsh(g, lower=True, driver="evd", overwrite_a=True, check_finite=False)
        out["eig_4096_s"] = time.process_time() - t
        for name, w in (("fc1", fc1), ("fc2", fc2)):
            t = time.process_time()
            spectral_metrics(w)
            out[f"{name}_spectrum_s"] = time.process_time() - t
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
