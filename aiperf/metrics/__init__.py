"""Metric definitions, per-request derivation and run-level aggregation (numpy)."""
