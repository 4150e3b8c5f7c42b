"""Regenerate reportgen/schema/stats.schema.json from the stats.json types: python -m reportgen.schema."""

from __future__ import annotations

from reportgen.schema import STATS_SCHEMA, write_stats_schema

if __name__ == "__main__":
    print(f"{STATS_SCHEMA}: {'rewritten' if write_stats_schema() else 'already current'}")
