"""`reportgen inspect PATH`: a quick table of a weights file's layers, streamed as it is read."""

from __future__ import annotations

import fnmatch
import functools
import json
import sys
from pathlib import Path
from typing import Any

from reportgen.formatting import plain
from reportgen.sources.base import LayerInfo, TensorRef
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
            out.write(f"{path}: {source.info.description}\n")
            out.write(f"{len(layers)} layers with weights, {tensors} tensors, {params:,} parameters\n\n")
            out.write(_row([c[0] for c in COLUMNS]) + "\n")
            out.write(_row(["-" * c[1] for c in COLUMNS]) + "\n")
            out.flush()
        records = []
        for layer in layers:
            for ref in layer.params:
                s = compute_stats(functools.partial(source.iter_chunks, ref), shape=ref.shape, dtype=ref.dtype, bins=10)
                if as_json:
                    records.append(stats_record(layer, ref, s))
                else:
                    out.write(_row(_stats_row(layer, ref, s)) + "\n")
                    out.flush()
        if as_json:
            doc = {"path": str(path), "format": source.info.format, "tensors": records}
            out.write(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n")
        elif any(layer.type_source == "inferred" for layer in layers) and not quiet:
            out.write("\n* layer type inferred from tensor shapes\n")
    return 0
