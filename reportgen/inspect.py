"""`reportgen inspect PATH`: a quick table of a weights file's layers, streamed as it is read."""

from __future__ import annotations

import fnmatch
import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import printable
from reportgen.formatting import plain
from reportgen.sources.base import DEFAULT_CHUNK_ELEMS, LayerInfo, TensorRef, WeightSource
from reportgen.stats import TensorStats, compute_stats

COLUMNS = (
    ("layer", 28, "<"),
    ("type", 12, "<"),
    ("param", 9, "<"),
    ("shape", 18, "<"),
    ("dtype", 8, "<"),
    ("mean", 10, ">"),
    ("std", 10, ">"),
    ("min", 10, ">"),
    ("max", 10, ">"),
    ("zeros", 7, ">"),
    ("nan/inf", 7, ">"),
)


def _cell(text: str, width: int, align: str) -> str:
    # Names come from the file: escape sequences in them would retitle the terminal, clear the
    # screen or draw fake rows. Escaped, they stay visible and inert.
    text = printable(text, 10_000)
    if len(text) > width:
        text = "…" + text[-(width - 1) :] if align == "<" else text[:width]
    return f"{text:{align}{width}}"


def _row(values: list[str]) -> str:
    return "  ".join(_cell(v, w, a) for v, (_, w, a) in zip(values, COLUMNS, strict=True)).rstrip()


def _stats_row(layer: LayerInfo, ref: TensorRef, s: TensorStats) -> list[str]:
    zeros = f"{100 * s.zero_frac:.1f}%" if s.count else "–"
    return [
        layer.name,
        layer.class_name + ("*" if layer.type_source == "inferred" else ""),
        ref.name,
        "(" + ", ".join(str(d) for d in ref.shape) + ")",
        ref.dtype,
        plain(s.mean),
        plain(s.std),
        plain(s.min),
        plain(s.max),
        zeros,
        f"{s.nan + s.inf}",
    ]


def stats_record(layer: LayerInfo, ref: TensorRef, s: TensorStats) -> dict[str, Any]:
    """Return one tensor's numbers as a JSON-ready mapping."""
    from reportgen.render.json_report import jsonable

    out = jsonable(s)
    out.pop("histogram", None)
    return {
        "layer": layer.name,
        "class_name": layer.class_name,
        "type_source": layer.type_source,
        "param": ref.name,
        "role": ref.role,
        "stats": out,
    }


def _stats(source: WeightSource, ref: TensorRef) -> TensorStats:
    """Return a tensor's statistics: small tensors read whole, big ones streamed in chunks."""
    if ref.size <= DEFAULT_CHUNK_ELEMS:
        # A known size keeps the scratch space to the tensor's size (a chunk factory gets a full block).
        return compute_stats(np.asarray(source.read(ref)), shape=ref.shape, dtype=ref.dtype, bins=10)
    return compute_stats(functools.partial(source.iter_chunks, ref), shape=ref.shape, dtype=ref.dtype, bins=10)


def run_inspect(path: Path, *, as_json: bool = False, pattern: str | None = None, quiet: bool = False) -> int:
    """Print every tensor of a weights file with its statistics; return the exit code."""
    from reportgen.sources.detect import open_path

    out = sys.stdout
    with open_path(path) as source:
        layers = [
            layer
            for layer in source.layers()
            if layer.params and (pattern is None or fnmatch.fnmatchcase(layer.name, pattern))
        ]
        if not as_json:
            tensors = sum(len(layer.params) for layer in layers)
            params = sum(layer.param_count for layer in layers)
            out.write(f"{printable(str(path), 1000)}: {printable(source.info.description, 1000)}\n")
            out.write(f"{len(layers)} layers with weights, {tensors} tensors, {params:,} parameters\n\n")
            out.write(_row([c[0] for c in COLUMNS]) + "\n")
            out.write(_row(["-" * c[1] for c in COLUMNS]) + "\n")
            out.flush()
        first = True
        if as_json:
            # Records are written as they are computed: memory stays flat however many tensors there are.
            head = json.dumps({"format": source.info.format, "path": str(path)}, sort_keys=True)
            out.write(head[:-1] + ', "tensors": [')
        for layer in layers:
            for ref in layer.params:
                s = _stats(source, ref)
                if as_json:
                    # One compact line per tensor: the C encoder, ten times faster than an indented dump.
                    record = json.dumps(stats_record(layer, ref, s), sort_keys=True, allow_nan=False)
                    out.write(("\n" if first else ",\n") + record)
                    first = False
                else:
                    out.write(_row(_stats_row(layer, ref, s)) + "\n")
                    out.flush()
        if as_json:
            out.write("\n]}\n")
        elif any(layer.type_source == "inferred" for layer in layers) and not quiet:
            out.write("\n* layer type inferred from tensor shapes\n")
    return 0
