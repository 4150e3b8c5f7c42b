"""Compare outputs with gold files after scrubbing volatile parts; REPORTGEN_UPDATE_GOLD=1 rewrites them."""

from __future__ import annotations

import difflib
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

GOLD = Path(__file__).resolve().parent / "gold"
UPDATE = bool(os.environ.get("REPORTGEN_UPDATE_GOLD"))
MAX_DIFF_LINES = 80


def scrub(text: str, replacements: dict[str, str]) -> str:
    """Replace each volatile substring (paths, versions) by its stable placeholder."""
    for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0])):  # longest first: nested paths
        text = text.replace(old, new)
    return text


# Significant digits kept of every float. The computation is deterministic on one machine, but NumPy picks
# its reduction kernels by CPU (AVX-512, AVX2, SSE): with NPY_DISABLE_CPU_FEATURES turning off AVX2 and
# AVX-512 here, skewness, kurtosis, alpha and stable rank change in their last 1-3 of 17 digits.
FLOAT_DIGITS = 10


def round_floats(doc: Any) -> Any:
    """Return doc with every float rounded to FLOAT_DIGITS significant digits."""
    if isinstance(doc, float):
        return float(f"{doc:.{FLOAT_DIGITS}g}")
    if isinstance(doc, dict):
        return {k: round_floats(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [round_floats(v) for v in doc]
    return doc


def scrub_json(doc: Any, replacements: dict[str, str]) -> str:
    """Dump doc sorted and indented with rounded floats, scrub it, and blank versions and the config's digest."""
    text = json.dumps(round_floats(doc), indent=1, sort_keys=True, ensure_ascii=False)
    text = re.sub(r'("(?:tool_)?version": )"[^"]*"', r'\1"<version>"', text)
    # The config file names the weight files by absolute path, so its digest changes with the temp folder.
    text = re.sub(r'("config": \{\n\s*"name": "[^"]*",\n\s*"sha256": )"[0-9a-f]{64}"', r'\1"<sha256>"', text)
    return scrub(text, replacements) + "\n"


def compare(name: str, actual: str) -> None:
    """Fail with a short unified diff when actual differs from gold file name; rewrite it when updating."""
    gold = GOLD / name
    if UPDATE:
        gold.parent.mkdir(parents=True, exist_ok=True)
        gold.write_text(actual, encoding="utf-8")
        return
    if not gold.exists():
        pytest.fail(f"{gold} is missing: run `make update-gold`", pytrace=False)
    expected = gold.read_text(encoding="utf-8")
    if actual == expected:
        return
    diff = list(
        difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), f"gold/{name}", f"actual/{name}", n=2, lineterm=""
        )
    )
    shown = diff[:MAX_DIFF_LINES]
    if len(diff) > MAX_DIFF_LINES:
        shown.append(f"... {len(diff) - MAX_DIFF_LINES} more diff lines")
    pytest.fail(
        f"{name} differs from its gold file (run `make update-gold` if the change is intended):\n" + "\n".join(shown),
        pytrace=False,
    )


_TEXT_TAGS = {"h1", "h2", "h3", "h4", "figcaption", "summary", "th", "td", "li"}
_SKIP = {"script", "style", "svg"}
_VOID = {"br", "img", "meta", "link", "hr", "input"}


class _Outline(HTMLParser):
    """Collect a report's readable structure: sections, headings, tables, figures and alert/finding rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.stack: list[str] = []
        self.sections: list[str] = []
        self.skip = 0
        self.text: list[str] | None = None
        self.table: dict[str, Any] | None = None
        self.row: list[str] | None = None
        self.heading = ""

    def _emit(self, line: str) -> None:
        self.lines.append("  " * len(self.sections) + line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "img" and not self.skip:
                self._emit(f"img alt={dict(attrs).get('alt')!r}")
            return
        self.stack.append(tag)
        a = dict(attrs)
        if tag in _SKIP:
            self.skip += 1
        if self.skip:
            return
        label = tag + (f"#{a['id']}" if a.get("id") else "") + (f".{a['class']}" if a.get("class") else "")
        if tag == "section":
            self._emit(label)
            self.sections.append(a.get("id") or "")
        elif tag in ("figure", "details", "nav"):
            self._emit(label)
        elif tag in ("h1", "h2", "h3", "h4"):
            self.heading = label
        elif tag == "table":
            self.table = {"label": label, "head": [], "rows": [], "in_head": False}
        elif tag == "thead" and self.table is not None:
            self.table["in_head"] = True
        elif tag == "tr":
            self.row = []
        if tag in _TEXT_TAGS:
            self.text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not self.stack:
            return
        while self.stack and self.stack.pop() != tag:
            pass
        if tag in _SKIP:
            self.skip -= 1
            return
        if self.skip:
            return
        text = " ".join("".join(self.text or []).split())
        if tag in _TEXT_TAGS:
            self.text = None
        if tag in ("h1", "h2", "h3", "h4"):
            self._emit(f"{self.heading}: {text}")
        elif tag in ("figcaption", "summary"):
            self._emit(f"{tag}: {text}")
        elif tag == "li" and self.sections and self.sections[-1] in ("alerts", "findings"):
            self._emit(f"li: {text}")
        elif tag in ("th", "td") and self.row is not None:
            self.row.append(text)
        elif tag == "thead" and self.table is not None:
            self.table["in_head"] = False
        elif tag == "tr" and self.table is not None and self.row is not None:
            self.table["head" if self.table["in_head"] else "rows"].append(self.row)
            self.row = None
        elif tag == "table" and self.table is not None:
            self._table(self.table)
            self.table = None
        elif tag == "section" and self.sections:
            self.sections.pop()

    def _table(self, table: dict[str, Any]) -> None:
        """Emit a table's header and row count; alert rows in full; only headers in provenance (versions vary)."""
        head = " | ".join(table["head"][0]) if table["head"] else ""
        if "provenance" in self.sections:
            self._emit(f"{table['label']} [{head}]")
            return
        self._emit(f"{table['label']} [{head}] rows={len(table['rows'])}")
        if "alerts" in self.sections:
            for row in table["rows"]:
                self._emit("  row: " + " | ".join(row))

    def handle_data(self, data: str) -> None:
        if not self.skip and self.text is not None:
            self.text.append(data)


def html_outline(html: str, replacements: dict[str, str]) -> str:
    """Return the readable outline of a report's HTML, scrubbed of volatile values."""
    parser = _Outline()
    parser.feed(html)
    parser.close()
    return scrub("\n".join(parser.lines), replacements) + "\n"
