"""reportgen: reports on neural-network weights, to tell whether a model is trained well.

The Python API (reportgen.analyze, build, inspect_weights, compare, Report) lives in reportgen.api and is
imported on first use, so `import reportgen` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "FullReport",
    "Report",
    "TensorRow",
    "TensorSummary",
    "__version__",
    "analyze",
    "build",
    "compare",
    "inspect_weights",
]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from reportgen.api import (
        Comparison,
        FullReport,
        Report,
        TensorRow,
        TensorSummary,
        analyze,
        build,
        compare,
        inspect_weights,
    )


def __getattr__(name: str) -> Any:
    """Import the Python API on first use of one of its names."""
    if name in _API:
        from reportgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'reportgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
