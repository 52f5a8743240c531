"""Versioned, immutable artifacts on a local directory or S3, with CAS aliases and lineage."""

from airflow_mlcrit.core.artifacts.backends import LocalBackend, S3Backend
from airflow_mlcrit.core.artifacts.refs import KINDS, NAME_PATTERN, ArtifactRef, parse_ref
from airflow_mlcrit.core.artifacts.signing import Signer
from airflow_mlcrit.core.artifacts.store import (
    AliasMove,
    ArtifactStore,
    GcCandidate,
    Manifest,
    StagedVersion,
    open_store,
)

__all__ = [
    "KINDS",
    "NAME_PATTERN",
    "AliasMove",
    "ArtifactRef",
    "ArtifactStore",
    "GcCandidate",
    "LocalBackend",
    "Manifest",
    "S3Backend",
    "Signer",
    "StagedVersion",
    "open_store",
    "parse_ref",
]
