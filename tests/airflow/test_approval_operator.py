"""PromotionApprovalOperator through real dag.test() runs: the task parks in `awaiting_input`
(Airflow 3.3: no worker slot, no triggerer), a person answers through the api-server's HITL
endpoint (the real app, in process, on the same metadata DB), and the answer is recorded under the
core's four-eyes rules before PromoteModelOperator may move `production`."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.gating import promote
from tests.airflow.conftest import run_dag, task_states
from tests.helpers.airflow_app import api_app
from tests.helpers.registry import FIRST, LENIENT, add_adapter_version


@pytest.fixture(scope="module")
def api(airflow_db):
    """The api-server's app and a token per user (the simple auth manager's users are their ids)."""
    with api_app({u: "op" for u in ("alice", "bob", "dag_test", "mallory")}) as app:
        yield app


@pytest.fixture
def store(store_root, tmp_path):
    """adapter/clf v1 in production; v2 blessed against it."""
    store = open_store(store_root)
    add_adapter_version(store, tmp_path, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="first model", actor="pipeline")
    add_adapter_version(store, tmp_path, 17, baseline=1, base_right=16, gate=LENIENT)
    return store


def _awaiting(timeout: float = 120) -> str:
    """The run whose `approve` task waits in awaiting_input (observed in the metadata DB)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter_by(dag_id="test_mlcrit_approval", task_id="approve", state="awaiting_input")
                .one_or_none()
            )
            if ti is not None:
                return ti.run_id
        time.sleep(0.5)
    raise AssertionError("the approval task never reached awaiting_input")


def _answer_when_asked(api, *answers: tuple[str, str, str]) -> dict:
    """In a thread: once the task waits in awaiting_input, each (user, option, reason) answers in
    turn through the HITL endpoint; their responses land in the returned dict. dag.test() runs in
    the main thread (its task runner needs the main thread's signals)."""
    client, tokens = api
    out: dict = {"responses": []}

    def respond() -> None:
        try:
            run_id = _awaiting()
            path = f"/api/v2/dags/test_mlcrit_approval/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
            out["detail"] = client.get(path, headers={"Authorization": f"Bearer {tokens['alice']}"}).json()
            for user, option, reason in answers:
                body = {"chosen_options": [option], "params_input": {"reason": reason}}
                out["responses"].append(
                    client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens[user]}"})
                )
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            out["error"] = exc

    out["thread"] = threading.Thread(target=respond, daemon=True)
    out["thread"].start()
    return out


def _run(api, *answers: tuple[str, str, str]):
    answered = _answer_when_asked(api, *answers)
    dr = run_dag("test_mlcrit_approval")
    answered["thread"].join(30)
    assert "error" not in answered, answered.get("error")
    _run.detail = answered.get("detail")
    return dr, answered["responses"]


def test_approved_by_a_second_person_then_promoted_with_the_approver_in_the_history(api, store, lineage_tail):
    from tests.helpers.openlineage import validate_event

    dr, [response] = _run(api, ("alice", "approve", "phone slice reviewed"))
    assert response.status_code == 200, response.text
    assert dr.state == "success", task_states(dr)
    move = store.alias_history("adapter/clf", "production")[-1]
    assert (move.from_version, move.to_version) == (1, 2)
    assert (move.extra["approved_by"], move.extra["approval_reason"], move.extra["approval"]) == (
        "alice",
        "phone slice reviewed",
        "approval/clf@v2",
    )
    request = store.resolve("approval/clf@v1")
    assert (request.metadata["requested_by"], request.metadata["run"]["run_id"]) == ("dag_test", dr.run_id)
    detail = _run.detail  # what the approver was shown
    assert detail["subject"] == "Promote adapter/clf@v2 to production?"
    assert detail["options"] == ["approve", "reject"] and sorted(u["id"] for u in detail["assigned_users"]) == [
        "alice",
        "bob",
        "dag_test",
    ]
    body = detail["body"]
    assert "**adapter/clf@v2** would replace **adapter/clf@v1** as `production`" in body
    assert "Gate: **BLESSED** (blessing/clf@v2)" in body and "/mlcrit/e/adapter/clf" in body
    events = lineage_tail.events(dr)
    [done] = [e for e in events if e["job"]["name"] == "test_mlcrit_approval.promote" and e["eventType"] == "COMPLETE"]
    moved = done["run"]["facets"]["mlcrit_alias_move"]
    assert (moved["approval"], moved["approvedBy"], moved["approvalReason"]) == (
        "approval/clf@v2",
        "alice",
        "phone slice reviewed",
    )
    for event in events:
        validate_event(event)


def test_a_rejection_is_recorded_and_nothing_is_promoted(api, store):
    dr, [response] = _run(api, ("bob", "reject", "NE interval too wide"))
    assert response.status_code == 200, response.text
    assert {t: s for t, (s, _) in task_states(dr).items()} == {"approve": "skipped", "promote": "skipped"}
    decision = store.resolve("approval/clf@v2")
    assert (decision.metadata["state"], decision.metadata["decided_by"]) == ("REJECTED", "bob")
    assert store.alias_version("adapter/clf", "production") == 1


def test_the_user_who_triggered_the_run_cannot_approve_it(api, store):
    dr, [response] = _run(api, ("dag_test", "approve", "looks fine to me"))
    assert response.status_code == 200  # a listed respondent: Airflow takes the answer, our rules do not
    states = {t: s for t, (s, _) in task_states(dr).items()}
    assert states["approve"] == "failed" and states["promote"] in ("upstream_failed", "skipped")
    assert store.versions("approval/clf") == [1]  # the request only: no decision recorded
    assert store.alias_version("adapter/clf", "production") == 1


def test_someone_not_asked_cannot_answer(api, store):
    _, [refused, answered] = _run(api, ("mallory", "approve", "me"), ("bob", "reject", "not yet"))
    assert refused.status_code == 403 and "not a respondent" in refused.text
    assert answered.status_code == 200
    assert store.resolve("approval/clf@v2").metadata["decided_by"] == "bob"


def test_without_approvers_the_step_asks_nobody_and_the_gate_alone_decides(store):
    """The flagship DAG's default: its approvers param is empty, so the run stays unattended."""
    dr = run_dag("test_mlcrit_approval", {"approvers": []})
    assert {t: s for t, (s, _) in task_states(dr).items()} == {"approve": "success", "promote": "success"}
    move = store.alias_history("adapter/clf", "production")[-1]
    assert move.to_version == 2 and "approval" not in move.extra and store.list_artifacts("approval") == []
