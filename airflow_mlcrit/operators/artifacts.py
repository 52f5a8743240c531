"""RegisterArtifactOperator: bring an existing file or directory into the store as a new version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_mlcrit.core.artifacts import parse_ref
from airflow_mlcrit.operators.base import MlcritBaseOperator, artifact_asset
from airflow_mlcrit.operators.results import RegisterArtifactResult, artifact_result


class RegisterArtifactOperator(MlcritBaseOperator):
    """Commit a local file or directory as a new version of ``kind/name`` (the Airflow twin of
    ``mlcrit artifacts put``): how raw datasets and base models enter a pipeline.

    :param artifact: ``kind/name`` of the artifact to version, e.g. ``dataset/reviews``. (templated)
    :param path: local file or directory to register. (templated)
    :param parents: references of the inputs it was made from. (templated)
    :param metadata: JSON-able user metadata kept in the manifest. (templated)
    :param description: documentation facet of the lineage dataset. (templated)
    """

    template_fields: Sequence[str] = (
        *MlcritBaseOperator.template_fields,
        "artifact",
        "path",
        "parents",
        "metadata",
        "description",
    )
    template_fields_renderers = {"metadata": "json"}

    def __init__(
        self,
        *,
        artifact: str,
        path: str,
        parents: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        **kwargs: Any,
    ):
        if "{{" not in artifact:
            parse_ref(artifact)  # fail at parse time on a bad name, not at run time
            kwargs.setdefault("outlets", [artifact_asset(artifact)])
        super().__init__(**kwargs)
        self.artifact = artifact
        self.path = path
        self.parents = parents
        self.metadata = metadata
        self.description = description

    def execute(self, context: Any) -> RegisterArtifactResult:
        from airflow_mlcrit.core.artifacts.refs import parse_key
        from airflow_mlcrit.core.payloads import check_payload

        check_payload(parse_key(self.artifact)[0], self.path)  # a prompt or suite that cannot load: refused
        for parent in self.parents:
            self.read_input(parent)
        manifest = self.commit(
            context,
            self.artifact,
            self.path,
            parents=self.parents,
            metadata=self.metadata,
            **({"description": self.description} if self.description else {}),
        )
        return artifact_result(RegisterArtifactResult, manifest, {"files": len(manifest.files), "bytes": manifest.size})
