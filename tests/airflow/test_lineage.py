"""Core LineageRecord -> OpenLineage objects: every facet we build validates against its schema."""

import uuid

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.lineage import LineageRecord, schema_path
from airflow_mlcrit.operators.base import MlcritLineageMixin, to_operator_lineage
from tests.helpers.openlineage import validate_event


def _event(lineage) -> dict:
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-26T12:00:00.000Z",
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="mlcrit-tests", name="dag.task"),
        inputs=lineage.inputs,
        outputs=lineage.outputs,
        producer="https://github.com/airflow-mlcrit/airflow-mlcrit",
    )
    return Serde.to_dict(event)


def test_all_standard_and_custom_facets_validate(tmp_path):
    store = open_store(tmp_path / "s")
    f = tmp_path / "d.csv"
    f.write_text("x")
    data = store.put("dataset/d", f)
    model = store.put("model/m", f, parents=[data.ref])
    record = LineageRecord()
    record.add_input(
        store, data, schema_fields=[{"name": "text", "type": "string", "description": "review"}], file_format="csv"
    )
    record.add_output(store, model, description="a model")
    event = _event(to_operator_lineage(record))
    assert validate_event(event) == {"version", "storage", "mlcrit_artifact", "schema", "documentation"}
    [inp] = event["inputs"]
    assert inp["facets"]["schema"]["fields"] == [{"name": "text", "type": "string", "description": "review"}]
    assert inp["facets"]["storage"] == {
        "_producer": "https://github.com/airflow-mlcrit/airflow-mlcrit/tree/v0.1.0",
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/StorageDatasetFacet.json#/$defs/StorageDatasetFacet",
        "storageLayer": "mlcrit",
        "fileFormat": "csv",
    }
    out = event["outputs"][0]["facets"]["mlcrit_artifact"]
    assert (out["ref"], out["digest"], out["parents"]) == ("model/m@v1", model.digest, ["dataset/d@v1"])


def test_custom_facet_schema_rejects_a_malformed_facet(tmp_path):
    import json

    from jsonschema import ValidationError

    store = open_store(tmp_path / "s")
    f = tmp_path / "d.csv"
    f.write_text("x")
    record = LineageRecord()
    ds = record.add_output(store, store.put("dataset/d", f))
    ds.facets["mlcrit_artifact"]["digest"] = "md5:abc"
    with pytest.raises(ValidationError, match="does not match"):
        validate_event(_event(to_operator_lineage(record)))
    assert json.loads(schema_path("mlcrit_artifact").read_text())["$id"].endswith("MlcritArtifactDatasetFacet.json")


def test_mixin_swallows_lineage_errors(monkeypatch):
    import airflow_mlcrit.operators.base as base

    monkeypatch.setattr(base, "to_operator_lineage", lambda record: 1 / 0)
    mixin = MlcritLineageMixin()
    assert mixin.get_openlineage_facets_on_complete(None) is None
    assert mixin.get_openlineage_facets_on_failure(None) is None
