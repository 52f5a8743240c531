"""What every mlcrit operator shares: the store, idempotent commits, OpenLineage and Assets."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlcrit.core.artifacts import ArtifactRef, ArtifactStore, Manifest, parse_ref
from airflow_mlcrit.core.lineage import LineageRecord
from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook
from airflow_mlcrit.version_compat import Asset, BaseOperator, BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def artifact_asset(key: str) -> Asset:
    """The Airflow Asset standing for every version of ``kind/name``."""
    ref = parse_ref(key)
    return Asset(name=f"mlcrit:{ref.key}", uri=f"mlcrit://{ref.key}", group="mlcrit")


@functools.cache
def _facet_class(base: type, schema_url: str) -> type:
    """An OpenLineage facet class whose ``_schemaURL`` is ``schema_url``."""
    import attr

    cls = attr.make_class(base.__name__, {}, bases=(base,))
    cls._get_schema = staticmethod(lambda: schema_url)
    return cls


def _to_ol_facet(payload: Mapping[str, Any], base: type):
    fields = {k: v for k, v in payload.items() if not k.startswith("_")}
    instance = _facet_class(base, payload["_schemaURL"])(producer=payload["_producer"])
    return instance.with_additional_properties(**fields) if fields else instance


def to_operator_lineage(record: LineageRecord) -> OperatorLineage:
    """Core LineageRecord -> the OpenLineage provider's OperatorLineage."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.generated.base import (
        DatasetFacet,
        InputDatasetFacet,
        JobFacet,
        OutputDatasetFacet,
        RunFacet,
    )

    def facets(payloads: dict, base: type) -> dict:
        return {key: _to_ol_facet(payload, base) for key, payload in payloads.items()}

    return OperatorLineage(
        inputs=[
            InputDataset(
                namespace=d.namespace,
                name=d.name,
                facets=facets(d.facets, DatasetFacet),
                inputFacets=facets(d.input_facets, InputDatasetFacet),
            )
            for d in record.inputs
        ],
        outputs=[
            OutputDataset(
                namespace=d.namespace,
                name=d.name,
                facets=facets(d.facets, DatasetFacet),
                outputFacets=facets(d.output_facets, OutputDatasetFacet),
            )
            for d in record.outputs
        ],
        job_facets=facets(record.job_facets, JobFacet),
        run_facets=facets(record.run_facets, RunFacet),
    )


class MlcritLineageMixin:
    """Reports what the operator read and wrote to Airflow's OpenLineage provider.

    Lineage is best effort by design: any error here is logged and swallowed, never failing
    the task that did the real work.
    """

    lineage: LineageRecord

    def _operator_lineage(self) -> OperatorLineage | None:
        try:
            return to_operator_lineage(getattr(self, "lineage", None) or LineageRecord())
        except Exception:
            log.warning("mlcrit: could not build OpenLineage facets; the task result is unaffected", exc_info=True)
            return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        return self._operator_lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        return self._operator_lineage()


class MarquezJobLink(BaseOperatorLink):
    """The task's job in the Marquez web UI (``[mlcrit] marquez_url``; empty: no link)."""

    name = "Lineage in Marquez"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from urllib.parse import quote

        from airflow_mlcrit.version_compat import conf

        base = (conf.get("mlcrit", "marquez_url", fallback="") or "").rstrip("/")
        if not base:
            return ""
        namespace = conf.get("openlineage", "namespace", fallback="default") or "default"
        return f"{base}/lineage/job/{quote(namespace, safe='')}/{quote(f'{ti_key.dag_id}.{ti_key.task_id}', safe='')}"


class MlcritBaseOperator(MlcritLineageMixin, BaseOperator):
    """Base of the mlcrit operators.

    :param store_conn_id: connection of the artifact store (``mlcrit`` or ``aws`` type); None
        uses ``[mlcrit] artifact_root``. (templated)
    :param artifact_root: overrides the store root of the connection or config. (templated)
    """

    template_fields: Sequence[str] = ("store_conn_id", "artifact_root")
    ui_color = "#e8f0fe"
    operator_extra_links = (MarquezJobLink(),)

    def __init__(self, *, store_conn_id: str | None = None, artifact_root: str | None = None, **kwargs: Any):
        # each key of the result is also an XCom of its own, so ``upstream.output["clean"]`` reads
        # it (and fails with XComNotFound when a task has no such key)
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.store_conn_id = store_conn_id
        self.artifact_root = artifact_root
        self.lineage = LineageRecord()
        self._store: ArtifactStore | None = None

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            self._store = ArtifactStoreHook(self.store_conn_id, root=self.artifact_root).get_store()
        return self._store

    @staticmethod
    def producer(context: Context) -> dict[str, Any]:
        ti = context["ti"]
        return {
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "try_number": ti.try_number,
        }

    @staticmethod
    def idempotency_key(context: Context, output: str) -> str:
        """One key per task instance and output: an Airflow retry maps to the same version."""
        ti = context["ti"]
        return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}/{output}"

    def pre_execute(self, context: Context) -> None:
        super().pre_execute(context)
        ti = context["ti"]
        self._run = f"{ti.dag_id}/{ti.run_id}"
        self._floating: dict[str, str] = {}

    def resolve_input(self, ref: str | ArtifactRef) -> Manifest:
        """An input reference's committed version. In a DAG run, ``@latest`` and aliases are
        resolved once per run (the store records the first resolution): every task of the run,
        and a re-run of a finished one, reads the same version, whatever landed since."""
        run = getattr(self, "_run", None)
        if run is None:  # called outside a task (a parse-time check)
            return self.store.resolve(ref)
        manifest, floating = self.store.resolve_for_run(ref, run)
        if floating is not None:
            self._floating[str(manifest.ref)] = floating
            self.log.info("%s is %s for this DAG run (resolved once per run)", floating, manifest.ref)
        return manifest

    def read_input(self, ref: str | ArtifactRef, **facets: dict[str, Any]) -> Manifest:
        """Resolve an input reference to its committed version (once per DAG run for ``@latest``
        and aliases) and record it as a lineage input, with the floating reference it came from."""
        manifest = self.resolve_input(ref)
        self._add_input(manifest, **facets)
        return manifest

    def _add_input(self, manifest: Manifest, **facets: dict[str, Any]) -> None:
        ds = self.lineage.add_input(self.store, manifest, **facets)
        floating = getattr(self, "_floating", {}).get(str(manifest.ref))
        if floating is not None:
            ds.facets["mlcrit_artifact"]["resolvedFrom"] = floating

    def find_committed(self, context: Context, key: str, parents: Iterable[str | ArtifactRef]) -> Manifest | None:
        """The version an earlier try of this task instance committed for ``key`` from these
        inputs (a task killed after its commit), for a retry to reuse instead of recomputing.
        The caller records it with ``_record_output``, as ``commit`` would have; ``committed``
        does both."""
        manifest = self.store.committed(key, self.idempotency_key(context, key), parents=parents)
        if manifest is not None:
            self.log.info(
                "%s was committed by try %s of this task instance: reusing it, not computing it again",
                manifest.ref,
                manifest.producer.get("try_number"),
            )
        return manifest

    def committed(
        self, context: Context, key: str, parents: Iterable[str | ArtifactRef], **facets: dict[str, Any]
    ) -> Manifest | None:
        """``find_committed``, recorded with the lineage facets ``commit`` would have recorded."""
        manifest = self.find_committed(context, key, parents)
        if manifest is not None:
            self._record_output(context, key, manifest, **facets)
        return manifest

    def commit(
        self,
        context: Context,
        key: str,
        source: Any,
        *,
        parents: Iterable[str | ArtifactRef] = (),
        metadata: Mapping[str, Any] | None = None,
        libraries: Mapping[str, str] | None = None,
        files: Iterable[Mapping[str, Any]] | None = None,
        **facets: dict[str, Any],
    ) -> Manifest:
        """Commit an output version idempotently; record it for lineage and the asset event.
        ``source`` is what ``ArtifactStore.put`` takes, or a StagedVersion that workers wrote,
        committed from their ``files`` records."""
        from airflow_mlcrit.core.artifacts import StagedVersion

        common = {
            "parents": parents,
            "metadata": metadata,
            "producer": self.producer(context),
            "idempotency_key": self.idempotency_key(context, key),
            "libraries": libraries,
        }
        if isinstance(source, StagedVersion):
            manifest = self.store.commit_staged(source, files or (), **common)
        else:
            manifest = self.store.put(key, source, **common)
        self.log.info("committed %s (%s) at %s", manifest.ref, manifest.digest, manifest.uri)
        self._record_output(context, key, manifest, **facets)
        return manifest

    def _record_output(self, context: Context, key: str, manifest: Manifest, **facets: dict[str, Any]) -> None:
        """A lineage output, and the ref on the output's asset event (fresh or reused alike)."""
        self.lineage.add_output(self.store, manifest, **facets)
        asset = artifact_asset(key)
        if any(getattr(o, "uri", None) == asset.uri for o in self.outlets or ()):
            context["outlet_events"][asset].extra = {"ref": str(manifest.ref), "digest": manifest.digest}


def default_output_name(dag_id: str) -> str:
    """A valid artifact name derived from a dag_id (``My DAG`` -> ``my-dag``)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", dag_id.lower()).strip("-._")
    return name[:128] or "output"


class StepOperator(MlcritBaseOperator):
    """An operator running one core step from a config, committing a ``output_kind`` artifact.

    :param config: the step's config dataclass or a dict of its fields. (templated)
    :param output_name: name of the output artifact; default derived from the dag_id. (templated)
    """

    template_fields: Sequence[str] = (*MlcritBaseOperator.template_fields, "config", "output_name")
    template_fields_renderers = {"config": "json"}
    output_kind = ""

    def __init__(self, *, config: Any = None, output_name: str | None = None, **kwargs: Any):
        if output_name and "{{" not in output_name and self.output_kind:
            kwargs.setdefault("outlets", [artifact_asset(f"{self.output_kind}/{output_name}")])
        super().__init__(**kwargs)
        self.config = config
        self.output_name = output_name

    def config_dict(self) -> dict[str, Any]:
        """The (rendered) config as a plain dict, whether it was given as a dataclass or a dict."""
        if self.config is None:
            return {}
        return self.config.to_dict() if hasattr(self.config, "to_dict") else dict(self.config)

    def output_name_for(self, context: Context) -> str:
        return self.output_name or default_output_name(context["ti"].dag_id)


class DatasetStepOperator(StepOperator):
    """A step that reads one dataset, given as an artifact reference or a path / s3:// URI.

    :param dataset: dataset artifact reference (``dataset/reviews@latest``), local path or s3:// URI. (templated)
    """

    template_fields: Sequence[str] = (*StepOperator.template_fields, "dataset")

    def __init__(self, *, dataset: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.dataset = dataset

    def pin(self, ref: str) -> tuple[str, Manifest | None]:
        """Pin an artifact reference to its version now, so what is read is what lineage records."""
        from airflow_mlcrit.core.tables import is_artifact_ref

        if is_artifact_ref(ref.split("@")[0]):
            manifest = self.resolve_input(ref)
            return str(manifest.ref), manifest
        return ref, None

    def record_input(self, source: str, manifest: Manifest | None, **facets: dict[str, Any]) -> None:
        from airflow_mlcrit.core.lineage import external_dataset

        if manifest is not None:
            self._add_input(manifest, **facets)
        else:
            self.lineage.inputs.append(external_dataset(source, **facets))
