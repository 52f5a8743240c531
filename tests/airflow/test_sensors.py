"""ArtifactVersionSensor and DataDriftSensor deferring in a real dag.test() run (triggers run
inline there) while another thread commits new dataset versions."""

import threading

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.demo import customer_messages
from tests.airflow.conftest import run_dag, task_states


def test_sensors_wait_for_versions_and_fire_only_on_drift(store_root, tmp_path, monkeypatch, capfd):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    store = open_store(store_root)

    def put(frame, name):
        frame.to_parquet(tmp_path / name, index=False)
        return store.put("dataset/incoming", tmp_path / name)

    put(customer_messages(400, week=1, seed=1), "w1.parquet")

    # dag.test runs tasks in this process: spy on the sensors' defer calls to act while they wait
    from airflow_mlcrit.sensors.artifacts import ArtifactVersionSensor

    deferred = {key: threading.Event() for key in (("new_version", 1), ("drift", 2))}
    original = ArtifactVersionSensor._defer

    def spy(self, after):
        if (self.task_id, after) in deferred:
            deferred[(self.task_id, after)].set()
        return original(self, after)

    monkeypatch.setattr(ArtifactVersionSensor, "_defer", spy)

    def later():
        assert deferred[("new_version", 1)].wait(120)  # the sensor deferred before the version came
        put(customer_messages(400, week=1, seed=2), "w1b.parquet")  # same distribution: no drift
        assert deferred[("drift", 2)].wait(120)  # v2 was checked, within thresholds: the wait went on
        put(customer_messages(400, week=2, seed=3), "w2.parquet")  # channel mix and slang drift

    writer = threading.Thread(target=later)
    writer.start()
    dr = run_dag("test_mlcrit_sensors", {"after": 1})
    writer.join()
    assert dr.state == "success", task_states(dr)
    with create_session() as session:
        rows = {x.task_id: x.value for x in session.query(XComModel).filter_by(run_id=dr.run_id, key="return_value")}
    import json

    value = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731
    assert value(rows["new_version"]) == {"ref": "dataset/incoming@v2", "version": 2}
    drift = value(rows["drift"])
    assert drift["ref"] == "dataset/incoming@v3" and drift["baseline"] == "dataset/incoming@v2"
    assert [d["column"] for d in drift["drifted"]] == ["channel"] or "channel" in [
        d["column"] for d in drift["drifted"]
    ]
