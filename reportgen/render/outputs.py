"""Write one document as the requested formats: the HTML page, the same page as a PDF, the JSON document."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reportgen.render.pdf import render_pdf


def render_outputs(
    stem: str, formats: tuple[str, ...], page: Callable[[bool], str], document: Callable[[], Any]
) -> dict[str, bytes]:
    """Return {stem.html, stem.pdf, stem.json: bytes} for the formats asked; page(for_pdf) gives the HTML."""
    out: dict[str, bytes] = {}
    if "html" in formats:
        out[f"{stem}.html"] = page(False).encode("utf-8")
    if "pdf" in formats:
        out[f"{stem}.pdf"] = render_pdf(page(True))
    if "json" in formats:
        text = json.dumps(document(), indent=1, sort_keys=True, allow_nan=False) + "\n"
        out[f"{stem}.json"] = text.encode("utf-8")
    return out
