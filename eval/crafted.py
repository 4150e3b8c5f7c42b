"""Crafted cases (placeholder)."""

from __future__ import annotations

from pathlib import Path


def cases(folder: Path) -> list:
    return []
