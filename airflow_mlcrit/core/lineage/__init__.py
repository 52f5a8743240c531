"""Plain lineage records (no OpenLineage or Airflow import): what a step read and wrote, with facets.

The operator layer turns a :class:`LineageRecord` into OpenLineage objects. Facets are plain
dicts that carry their ``_schemaURL``; standard facets point at the OpenLineage spec, ours
at a JSON Schema shipped in this package (:func:`schema_path`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from airflow_mlcrit import __version__
from airflow_mlcrit.core.artifacts import ArtifactStore, Manifest

PRODUCER = f"https://github.com/airflow-mlcrit/airflow-mlcrit/tree/v{__version__}"
OL_FACETS = "https://openlineage.io/spec/facets"
MLCRIT_SCHEMA_BASE = (
    "https://raw.githubusercontent.com/airflow-mlcrit/airflow-mlcrit/main/airflow_mlcrit/core/lineage/schemas"
)
STANDARD_SCHEMAS = {
    "version": f"{OL_FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "storage": f"{OL_FACETS}/1-0-1/StorageDatasetFacet.json#/$defs/StorageDatasetFacet",
    "documentation": f"{OL_FACETS}/1-1-0/DocumentationDatasetFacet.json#/$defs/DocumentationDatasetFacet",
    "schema": f"{OL_FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "dataQualityMetrics": f"{OL_FACETS}/1-0-3/DataQualityMetricsInputDatasetFacet.json"
    "#/$defs/DataQualityMetricsInputDatasetFacet",
    "dataQualityAssertions": f"{OL_FACETS}/1-1-0/DataQualityAssertionsDatasetFacet.json"
    "#/$defs/DataQualityAssertionsDatasetFacet",
    "outputStatistics": f"{OL_FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json"
    "#/$defs/OutputStatisticsOutputDatasetFacet",
}
# Facets that OpenLineage defines on the input/output side of a dataset, not on the dataset itself.
INPUT_FACETS = frozenset({"dataQualityMetrics", "dataQualityAssertions"})
OUTPUT_FACETS = frozenset({"outputStatistics"})
# Our facets: key in the event -> schema file shipped in airflow_mlcrit/core/lineage/schemas/.
CUSTOM_FACETS = {
    "mlcrit_artifact": "MlcritArtifactDatasetFacet",
    "mlcrit_beam": "MlcritBeamJobFacet",
    "mlcrit_model": "MlcritModelDatasetFacet",
    "mlcrit_training": "MlcritTrainingRunFacet",
    "mlcrit_evaluation": "MlcritEvaluationDatasetFacet",
    "mlcrit_blessing": "MlcritBlessingDatasetFacet",
    "mlcrit_alias_move": "MlcritAliasMoveRunFacet",
    "mlcrit_prompt": "MlcritPromptDatasetFacet",
}


def schema_url(facet_key: str) -> str:
    if facet_key in STANDARD_SCHEMAS:
        return STANDARD_SCHEMAS[facet_key]
    name = CUSTOM_FACETS[facet_key]
    return f"{MLCRIT_SCHEMA_BASE}/{name}.json#/$defs/{name}"


def schema_path(facet_key: str):
    """The packaged JSON Schema of one of our custom facets."""
    return resources.files(__name__).joinpath("schemas", f"{CUSTOM_FACETS[facet_key]}.json")


def without_nulls(obj: Any) -> Any:
    """``obj`` with every null left out, as OpenLineage's client will send it (it drops nulls in
    dicts and lists): a facet must never rely on a null to say something."""
    if isinstance(obj, dict):
        return {k: without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [without_nulls(v) for v in obj if v is not None]
    return obj


def facet(facet_key: str, **fields: Any) -> dict[str, Any]:
    """A facet payload with the producer and schema URL filled in."""
    return {"_producer": PRODUCER, "_schemaURL": schema_url(facet_key), **fields}


@dataclass
class LineageDataset:
    namespace: str
    name: str
    facets: dict[str, dict[str, Any]] = field(default_factory=dict)
    input_facets: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_facets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_facets(self, **facets: dict[str, Any]) -> LineageDataset:
        """Add facets, each where OpenLineage defines it (dataset, input or output side)."""
        for key, payload in facets.items():
            side = self.input_facets if key in INPUT_FACETS else self.output_facets if key in OUTPUT_FACETS else None
            (self.facets if side is None else side)[key] = payload
        return self


@dataclass
class LineageRecord:
    """What one step read and wrote."""

    inputs: list[LineageDataset] = field(default_factory=list)
    outputs: list[LineageDataset] = field(default_factory=list)
    job_facets: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_facets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_input(self, store: ArtifactStore, manifest: Manifest, **facets: dict[str, Any]) -> LineageDataset:
        ds = artifact_dataset(store, manifest, **facets)
        self.inputs.append(ds)
        return ds

    def add_output(self, store: ArtifactStore, manifest: Manifest, **facets: dict[str, Any]) -> LineageDataset:
        ds = artifact_dataset(store, manifest, **facets)
        self.outputs.append(ds)
        return ds


def external_dataset(uri: str, **facets: dict[str, Any]) -> LineageDataset:
    """A dataset that is not an artifact: a local path or an s3:// URI read directly."""
    import os
    import socket

    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        ds = LineageDataset(f"s3://{bucket}", key)
    else:
        ds = LineageDataset(f"file://{socket.gethostname()}", os.path.abspath(uri).lstrip("/"))
    return ds.add_facets(**facets)


def dataset_identity(store: ArtifactStore, kind: str, name: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of an artifact: one dataset per kind/name, versions as facets."""
    prefix = store.backend.path_prefix
    return store.backend.namespace, f"{prefix}/{kind}/{name}" if prefix else f"{kind}/{name}"


def artifact_dataset(
    store: ArtifactStore,
    manifest: Manifest,
    *,
    description: str | None = None,
    schema_fields: list[dict[str, str]] | None = None,
    file_format: str | None = None,
    **extra_facets: dict[str, Any],
) -> LineageDataset:
    namespace, name = dataset_identity(store, manifest.kind, manifest.name)
    facets: dict[str, dict[str, Any]] = {
        "version": facet("version", datasetVersion=f"v{manifest.version}"),
        "storage": facet("storage", storageLayer="mlcrit", **({"fileFormat": file_format} if file_format else {})),
        "mlcrit_artifact": facet(
            "mlcrit_artifact",
            kind=manifest.kind,
            artifactName=manifest.name,
            version=manifest.version,
            ref=str(manifest.ref),
            digest=manifest.digest,
            uri=manifest.uri,
            sizeBytes=manifest.size,
            fileCount=len(manifest.files),
            parents=[p["ref"] for p in manifest.parents],
            createdAt=manifest.created_at,
        ),
    }
    if description:
        facets["documentation"] = facet("documentation", description=description)
    if schema_fields:
        facets["schema"] = facet("schema", fields=schema_fields)
    return LineageDataset(namespace, name, facets).add_facets(**extra_facets)
