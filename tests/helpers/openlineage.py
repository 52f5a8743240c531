"""Validate OpenLineage events: the package's validator over the vendored official schemas."""

from airflow_mlcrit.core.lineage.validate import validate_event

__all__ = ["validate_event"]
