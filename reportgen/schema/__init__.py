"""JSON Schemas of the documents reportgen writes, loaded from the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def _load(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def stats_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of stats.json, as a fresh dict."""
    # A fresh parse each call: callers may mutate the dict without touching the cached text.
    schema: dict[str, Any] = json.loads(_load("stats.schema.json"))
    return schema


def validate_stats(doc: Any) -> None:
    """Raise jsonschema.ValidationError if doc is not a valid stats.json document."""
    import jsonschema

    jsonschema.Draft202012Validator(stats_schema()).validate(doc)
