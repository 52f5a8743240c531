"""PromotionApprovalOperator through real dag.test() runs: the task parks in `awaiting_input`
(Airflow 3.3: no worker slot, no triggerer), a person answers through the api-server's HITL
endpoint (the real app, in process, on the same metadata DB), and the answer is recorded under the
core's four-eyes rules before PromoteModelOperator may move `production`."""

from __future__ import annotations

import os
import threading
import time
from unittest import mock

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.gating import AliasPolicy, promote, set_policy
from tests.airflow.conftest import fail_waiting, run_dag, task_states, wait_parked
from tests.helpers.airflow_app import api_app
from tests.helpers.registry import FIRST, LENIENT, STRICT, add_adapter_version, judge


@pytest.fixture(scope="module")
def api(airflow_db):
    """The api-server's app and a token per user (the simple auth manager's users are their ids)."""
    with api_app({u: "op" for u in ("alice", "bob", "dag_test", "mallory")}) as app:
        yield app


def staged(store_root, tmp_path, policy: AliasPolicy | None):
    """adapter/clf v1 in production under ``policy``; v2 blessed against it."""
    store = open_store(store_root)
    add_adapter_version(store, tmp_path, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="first model", actor="pipeline", create=True)
    if policy is not None:
        set_policy(store, "adapter/clf", "production", policy, reason="four eyes", actor="owner")
    add_adapter_version(store, tmp_path, 17, baseline=1, base_right=16, gate=LENIENT)
    return store


FOUR_EYES = AliasPolicy(approvals=1, approvers=("alice", "bob", "dag_test"), expires_after_hours=1)


@pytest.fixture
def store(store_root, tmp_path):
    """One approval by alice, bob or dag_test (the user dag.test() triggers as) moves production."""
    return staged(store_root, tmp_path, FOUR_EYES)


def _awaiting(timeout: float = 600, dag_id: str = "test_mlcrit_approval") -> str:
    """The run whose `approve` task waits in awaiting_input, parked for good (tests/airflow/conftest.py)."""
    return wait_parked(dag_id, timeout=timeout)


def _answer_when_asked(api, *answers: tuple[str, str, str]) -> dict:
    """In a thread: once the task waits in awaiting_input, each (user, option, reason) answers in
    turn through the HITL endpoint; their responses land in the returned dict. dag.test() runs in
    the main thread (its task runner needs the main thread's signals)."""
    client, tokens = api
    out: dict = {"responses": []}

    def respond() -> None:
        run_id = None
        try:
            run_id = _awaiting()
            if "before" in out:
                out["before"]()
            path = f"/api/v2/dags/test_mlcrit_approval/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
            out["detail"] = client.get(path, headers={"Authorization": f"Bearer {tokens['alice']}"}).json()
            for user, option, reason in answers:
                body = {"chosen_options": [option], "params_input": {"reason": reason}}
                out["responses"].append(
                    client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens[user]}"})
                )
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            out["error"] = exc
        finally:
            # no answer was taken (an error above, or every answer refused): end the wait, or
            # dag.test() waits for one forever and the whole test process with it
            if not any(r.status_code == 200 for r in out["responses"]):
                _end_the_wait(api, run_id)

    out["thread"] = threading.Thread(target=respond, daemon=True)
    out["thread"].start()
    return out


def _end_the_wait(api, run_id: str | None) -> None:
    """Answer the waiting task as bob, who is always asked (a rejection: nothing is promoted), or,
    when it never got as far as waiting, fail it in the metadata DB, so that dag.test() returns
    and the test reports what went wrong."""
    client, tokens = api
    if run_id is not None:
        path = f"/api/v2/dags/test_mlcrit_approval/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
        body = {"chosen_options": ["reject"], "params_input": {"reason": "ends the test"}}
        for _ in range(10):  # a SQLite metadata DB busy with the run can refuse one write
            if client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens['bob']}"}).status_code == 200:
                return
            time.sleep(1)
    fail_waiting("test_mlcrit_approval")


def _state(dag_id: str, run_id: str) -> str | None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id="approve").one()
        return ti.state


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
    # dag_test, who triggered the run, is a listed approver but not asked (four eyes)
    assert detail["options"] == ["approve", "reject"] and sorted(u["id"] for u in detail["assigned_users"]) == [
        "alice",
        "bob",
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
    dr, [refused, answered] = _run(api, ("dag_test", "approve", "looks fine to me"), ("alice", "reject", "not yet"))
    # listed as an approver, but the requester: Airflow does not take the answer (not assigned)
    assert refused.status_code == 403 and "not a respondent" in refused.text
    assert answered.status_code == 200 and dr.state == "success"
    assert store.resolve("approval/clf@v2").metadata["decided_by"] == "alice"
    assert store.alias_version("adapter/clf", "production") == 1


def test_a_requester_who_is_the_only_approver_is_refused_before_anyone_is_asked(store_root, tmp_path):
    store = staged(store_root, tmp_path, AliasPolicy(approvals=1, approvers=("dag_test",)))
    dr = run_dag("test_mlcrit_approval")
    assert {t: s for t, (s, _) in task_states(dr).items()} == {"approve": "failed", "promote": "upstream_failed"}
    assert store.list_artifacts("approval") == []  # nothing was asked


def test_the_cli_answers_through_airflow_and_prints_the_recorded_decision(api, store, store_root, monkeypatch):
    """`mlcrit approve` on a request an Airflow task waits on answers through the api-server's
    REST API (a real HTTP server here) as the token's user; the task records the decision, which
    the CLI prints. The requester's token is refused by Airflow; a missing token, by the CLI."""
    import contextlib
    import io

    from airflow_mlcrit.core.cli import main
    from tests.helpers.airflow_app import serve

    client, tokens = api
    out: dict = {}

    def cli(token: str | None, *args: str) -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        env = {"MLCRIT_AIRFLOW_TOKEN": token} if token else {}
        with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["--root", str(store_root), *args])
        return code, stdout.getvalue(), stderr.getvalue()

    def respond(url: str) -> None:
        run_id = _awaiting()
        try:
            verb = ["approve", "approval/clf@v1", "--reason", "phone slice reviewed", "--airflow-url", url]
            out["no token"] = cli(None, *verb)
            out["requester"] = cli(tokens["dag_test"], *verb)
            out["alice"] = cli(tokens["alice"], *verb)
        except BaseException as exc:
            out["error"] = exc
        finally:  # whatever happened, end the wait so that dag.test() returns and the test can report
            path = f"/api/v2/dags/test_mlcrit_approval/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
            body = {"chosen_options": ["reject"], "params_input": {"reason": "ends the test"}}
            client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens['bob']}"})

    with serve(client.app) as url:
        thread = threading.Thread(target=respond, args=(url,), daemon=True)
        thread.start()
        dr = run_dag("test_mlcrit_approval")
        thread.join(60)
    assert "error" not in out, out.get("error")
    code, _, err = out["no token"]
    assert code == 1 and "approval/clf@v1 is answered in Airflow, where task approve of test_mlcrit_approval" in err
    assert "set $MLCRIT_AIRFLOW_TOKEN" in err
    code, _, err = out["requester"]
    assert code == 1 and "Airflow answered 403 to PATCH" in err and "not a respondent" in err
    code, printed, _ = out["alice"]  # the in-process api-server logs its requests to stdout too
    assert (
        code == 0 and printed.splitlines()[-1] == "approval/clf@v2: APPROVED adapter/clf@v2 for 'production' by alice"
    )
    assert dr.state == "success", task_states(dr)
    move = store.alias_history("adapter/clf", "production")[-1]
    assert (move.to_version, move.extra["approved_by"], move.extra["approval_reason"]) == (
        2,
        "alice",
        "phone slice reviewed",
    )


def test_an_approval_on_a_superseded_blessing_is_refused(api, store, tmp_path):
    """The candidate is judged again, NOT_BLESSED, while the request waits: alice's approval
    reaches the task, which refuses it; nothing is decided or promoted."""
    answered = _answer_when_asked(api, ("alice", "approve", "phone slice reviewed"))
    answered["before"] = lambda: judge(
        store, tmp_path, store.resolve("adapter/clf@v2"), 17, baseline=1, base_right=16, gate=STRICT
    )
    dr = run_dag("test_mlcrit_approval")
    answered["thread"].join(30)
    assert "error" not in answered, answered.get("error")
    states = {t: s for t, (s, _) in task_states(dr).items()}
    assert states == {"approve": "failed", "promote": "upstream_failed"}
    assert store.versions("approval/clf") == [1] and store.alias_version("adapter/clf", "production") == 1


def test_an_unanswered_request_expires_through_the_scheduler_s_sweep(store_root, tmp_path):
    """No one answers within 2 seconds: the scheduler's own timeout sweep (called here, as the
    scheduler's timer calls it; dag.test() has no scheduler) resumes the task with a timeout, the
    task records the request EXPIRED and fails, and nothing is promoted."""
    store = staged(
        store_root, tmp_path, AliasPolicy(approvals=1, approvers=("alice", "bob"), expires_after_hours=2 / 3600)
    )
    out: dict = {}

    def sweep() -> None:
        run_id = None
        try:
            from airflow.jobs.job import Job
            from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

            run_id = _awaiting(dag_id="test_mlcrit_approval_expiry")
            time.sleep(3)  # past the deadline
            # as the scheduler's timer does: sweep again until the task has been resumed (one
            # sweep can meet a SQLite metadata DB busy with dag.test()'s own loop)
            for _ in range(60):
                SchedulerJobRunner(job=Job(), executors=[]).check_awaiting_input_timeouts()
                if _state("test_mlcrit_approval_expiry", run_id) != "awaiting_input":
                    return
                time.sleep(1)
            raise AssertionError("the scheduler's sweep never resumed the expired request")
        except BaseException as exc:
            out["error"] = exc
            fail_waiting("test_mlcrit_approval_expiry")  # dag.test() returns, the test reports the error

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    dr = run_dag("test_mlcrit_approval_expiry")
    thread.join(30)
    assert "error" not in out, out.get("error")
    assert {t: s for t, (s, _) in task_states(dr).items()} == {"approve": "failed", "promote": "upstream_failed"}
    expired = store.resolve("approval/clf@v2").metadata
    assert (expired["state"], expired["request"], expired["decided_by"]) == ("EXPIRED", "approval/clf@v1", None)
    assert store.alias_version("adapter/clf", "production") == 1


def test_someone_not_asked_cannot_answer(api, store):
    _, [refused, answered] = _run(api, ("mallory", "approve", "me"), ("bob", "reject", "not yet"))
    assert refused.status_code == 403 and "not a respondent" in refused.text
    assert answered.status_code == 200
    assert store.resolve("approval/clf@v2").metadata["decided_by"] == "bob"


def test_without_a_policy_asking_for_approval_the_step_asks_nobody_and_the_gate_alone_decides(store_root, tmp_path):
    """The flagship DAG's default: production has no such policy, so the run stays unattended."""
    store = staged(store_root, tmp_path, None)
    dr = run_dag("test_mlcrit_approval")
    assert {t: s for t, (s, _) in task_states(dr).items()} == {"approve": "success", "promote": "success"}
    move = store.alias_history("adapter/clf", "production")[-1]
    assert move.to_version == 2 and "approval" not in move.extra and store.list_artifacts("approval") == []


def test_an_approver_answers_in_the_registry_ui_where_airflow_refuses_the_requester(api, store):
    """The registry's pending approvals carry a form for a request a task waits on; it answers the
    task's human-in-the-loop request as the logged-in user through Airflow's own handler. The
    requester (dag_test) is refused by Airflow, as through the REST API; alice's answer is taken,
    the task records it and the promotion follows."""
    import re

    client, tokens = api
    out: dict = {}

    def respond() -> None:
        try:
            _awaiting()
            for user in ("dag_test", "alice"):
                client.cookies.set("_token", tokens[user])
                page = client.get("/mlcrit/").text
                [token] = re.findall(r'name="token" value="([0-9a-f]{64})"', page)
                form = {"option": "approve", "reason": "reviewed in the registry", "token": token}
                out[user] = client.post("/mlcrit/approvals/clf/1", data=form, follow_redirects=False)
        except BaseException as exc:
            out["error"] = exc
        finally:
            client.cookies.clear()

    thread = threading.Thread(target=respond, daemon=True)
    thread.start()
    dr = run_dag("test_mlcrit_approval")
    thread.join(30)
    assert "error" not in out, out.get("error")
    assert out["dag_test"].status_code == 403 and "not a respondent" in out["dag_test"].text
    assert out["alice"].status_code == 303, out["alice"].text[:500]
    assert dr.state == "success", task_states(dr)
    move = store.alias_history("adapter/clf", "production")[-1]
    assert (move.to_version, move.extra["approved_by"], move.extra["approval_reason"]) == (
        2,
        "alice",
        "reviewed in the registry",
    )
    decision = store.resolve(move.extra["approval"])
    assert decision.metadata["identity"]["source"] == "airflow"
