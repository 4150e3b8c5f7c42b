"""The closed sets every stage shares: tensor roles, verdict statuses and their words, severities, outputs, fits.

Each set is one Literal; the tuple of its values comes from the Literal, so a value added in one
place is known everywhere. Layer kinds live in layer_kinds.py, weight formats in sources/formats.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# Canonical parameter roles; every source maps its own names onto these.
Role = Literal[
    "kernel",
    "bias",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
    "embedding",
    "recurrent_kernel",
    "depthwise_kernel",
    "pointwise_kernel",
    "other",
]
ROLES: tuple[Role, ...] = get_args(Role)

Status = Literal["at_init", "moved", "unknown_init", "no_weights"]
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class StatusWords:
    """How the report says one verdict status: a label, a short legend word and a phrase for a run of layers."""

    label: str  # verdict badges and stats.json's label
    short: str  # figure legends, where space is tight
    run: str  # "7 layers <run>" in a model's verdict summary


STATUS_WORDS: dict[Status, StatusWords] = {
    "at_init": StatusWords("at initialisation", "at initialisation", "at initialisation, consistent with fresh draws"),
    "moved": StatusWords("trained (moved from init)", "moved", "moved from their initial draw"),
    "unknown_init": StatusWords("initializer unknown", "unknown init", "with no known initializer"),
    "no_weights": StatusWords("no weights read", "no weights", "not read"),
}

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)  # most severe first: sorting uses the position

OutputFormat = Literal["html", "pdf", "json"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)

ExecutorKind = Literal["inline", "threads", "processes", "dask"]
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = get_args(ExecutorKind)

# csn: Clauset-Shalizi-Newman (two-sided KS); weightwatcher: its xmin rule, for comparison with that tool.
SpectralFit = Literal["csn", "weightwatcher"]
SPECTRAL_FITS: tuple[SpectralFit, ...] = get_args(SpectralFit)
