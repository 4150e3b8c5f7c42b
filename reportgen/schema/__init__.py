"""JSON Schemas of the documents reportgen writes: generated from their types, checked in, loaded from the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

STATS_SCHEMA = Path(__file__).resolve().parent / "stats.schema.json"


@cache
def _load(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def stats_schema() -> dict[str, Any]:
    """Return the checked-in JSON Schema (draft 2020-12) of stats.json, as a fresh dict."""
    # A fresh parse each call: callers may mutate the dict without touching the cached text.
    schema: dict[str, Any] = json.loads(_load("stats.schema.json"))
    return schema


def validate_stats(doc: Any) -> None:
    """Raise jsonschema.ValidationError if doc is not a valid stats.json document."""
    import jsonschema

    jsonschema.Draft202012Validator(stats_schema()).validate(doc)


def write_stats_schema(path: Path = STATS_SCHEMA) -> bool:
    """Regenerate the stats.json schema from its types; return whether the file changed."""
    from reportgen.stats_json import schema_text

    text = schema_text()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
