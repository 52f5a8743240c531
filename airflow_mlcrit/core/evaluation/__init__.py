"""Sliced evaluation with bootstrap confidence intervals (issue 6, first part: the metrics core)."""
