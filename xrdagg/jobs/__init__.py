"""Aggregation jobs: normalised raw rows (SPEC §2-3) into the statistics tables (SPEC §4-5)."""
