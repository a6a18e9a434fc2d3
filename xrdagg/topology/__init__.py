"""Topology: the files an operator edits, loading them, and resolving hosts to sites (SPEC §3)."""
