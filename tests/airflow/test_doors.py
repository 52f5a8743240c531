"""The door matrix: each governance rule tried through each door that can move an alias, every
door refusing with the same error class and message, because every door calls the core's
promote / rollback (core/gating/promotion.py), where the alias policy is enforced.

Doors: the operator (PromoteModelOperator in a real dag.test() run), the CLI (`mlcrit`), the
registry UI (a POST to the plugin inside the real api-server app), Airflow's REST API (answering
the approval task, where Airflow itself refuses the requester) and the Python API. A door that
offers no way to try a rule (the operator and the UI cannot force) is checked for that. The
last test fails if any module moves an alias without going through the core's promotion."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
from pathlib import Path
from unittest import mock

import pytest
from markupsafe import escape

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.artifacts.records import login_name
from airflow_mlcrit.core.gating import AliasPolicy, promote, rollback, set_policy
from airflow_mlcrit.core.gating.approval import decide_signed, generate_key, request_approval
from airflow_mlcrit.exceptions import MlcritError
from tests.airflow.conftest import fail_waiting, run_dag, task_states, wait_parked
from tests.helpers.airflow_app import api_app
from tests.helpers.registry import FIRST, LENIENT, STRICT, add_adapter_version

REPO = Path(__file__).resolve().parents[2]
KEYS = {u: generate_key() for u in ("alice", "bob", "carol")}
ME = login_name()  # the CLI's actor, and the Python API's default one
POLICY = AliasPolicy(
    approvals=1,
    approvers=("alice", "bob", "carol"),
    approver_keys={u: KEYS[u][1] for u in KEYS},
    force_by=("ops",),
)


@pytest.fixture(scope="module")
def world(airflow_db, tmp_path_factory):
    """adapter/clf: v1 in production under POLICY; v2 blessed against v1, promoted once on
    carol's request with alice's approval (now used) and rolled back; v3 NOT_BLESSED. A fresh
    request for v2, approved by alice (unused). The api-server app on the same store."""
    root = tmp_path_factory.mktemp("doors")
    work = root / "work"
    work.mkdir()
    env = {"AIRFLOW__MLCRIT__ARTIFACT_ROOT": str(root / "store"), "MLCRIT_TEST_FAILURES": str(root / "failures")}
    with mock.patch.dict(os.environ, env):
        store = open_store(root / "store")
        add_adapter_version(store, work, 16, baseline=None, base_right=0, gate=FIRST)
        promote(store, "adapter/clf@v1", "production", reason="first", actor="pipeline", create=True)
        set_policy(store, "adapter/clf", "production", POLICY, reason="four eyes", actor="owner")
        add_adapter_version(store, work, 17, baseline=1, base_right=16, gate=LENIENT)
        used = _approved(store, "alice")
        promote(store, "adapter/clf@v2", "production", reason="approved", actor="pipeline", approval=used)
        rollback(store, "adapter/clf", "production", reason="latency", actor="pipeline")
        add_adapter_version(store, work, 5, baseline=1, base_right=16, gate=STRICT)
        fresh = _approved(store, "alice")
        with api_app({"alice": "op", "editor": "op", "carol": "op"}, **env) as (client, tokens):
            yield {"store": store, "root": root, "client": client, "tokens": tokens, "used": used, "fresh": fresh}


def _approved(store, approver: str) -> str:
    request = request_approval(store, "adapter/clf@v2", "production", requested_by="carol")
    return str(
        decide_signed(store, str(request.ref), private_key=KEYS[approver][0].encode(), approve=True, reason="ok").ref
    )


# -- the doors: each returns (error class name, message) of its refusal ------------------------------


def python_door(world, *, candidate, alias="production", approval=None, force=False, actor=None):
    try:
        promote(world["store"], candidate, alias, reason="python door", approval=approval, force=force, actor=actor)
    except MlcritError as exc:
        return type(exc).__name__, str(exc)
    raise AssertionError("the Python API let it through")


def cli_door(world, *, candidate, alias="production", approval=None, force=False):
    from airflow_mlcrit.core.cli import main

    args = ["--root", str(world["root"] / "store"), "promote", candidate, "--alias", alias, "--reason", "cli door"]
    args += ["--approval", approval] if approval else []
    args += ["--force"] if force else []
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 1, "the CLI let it through"
    # the CLI prints "mlcrit: error: <message>"; its class is the one the Python API raises
    return err.getvalue().strip().removeprefix("mlcrit: error: ")


def ui_door(world, *, candidate, alias="production", approval="", user="editor", extra=None):
    client, tokens = world["client"], world["tokens"]
    client.cookies.set("_token", tokens[user])
    try:
        page = client.get("/mlcrit/a/adapter/clf").text
        [token] = set(re.findall(r'name="token" value="([0-9a-f]{64})"', page))
        form = {"alias": alias, "version": candidate.split("@v")[1], "reason": "ui door", "approval": approval}
        r = client.post("/mlcrit/a/adapter/clf/promote", data=form | {"token": token} | (extra or {}))
    finally:
        client.cookies.clear()
    assert r.status_code == 400, (r.status_code, r.text[:500])
    return r.text


def operator_door(world, *, candidate, alias="production", approval=""):
    failures = world["root"] / "failures"
    failures.unlink(missing_ok=True)
    dr = run_dag("test_mlcrit_doors", {"candidate": candidate, "alias": alias, "approval": approval})
    assert task_states(dr)["promote"][0] == "failed"
    [failure] = [json.loads(line) for line in failures.read_text().splitlines()]
    return failure["class"], failure["message"]


def _every_door(world, expected_class, expected_message, *, ui=True, operator=True, **attempt):
    assert python_door(world, **attempt) == (expected_class, expected_message)
    assert cli_door(world, **attempt) == expected_message
    if ui:
        page = ui_door(world, **{k: v or "" for k, v in attempt.items()})
        assert f'id="error-class">{expected_class}<' in page, page[:400]
        assert str(escape(expected_message)) in page
    if operator:
        assert operator_door(world, **{k: v or "" for k, v in attempt.items()}) == (expected_class, expected_message)
    assert world["store"].alias_version("adapter/clf", "production") == 1  # nothing moved, through any door


# -- the rules ----------------------------------------------------------------------------------------


def test_a_blessing_is_required_at_every_door(world):
    digest = world["store"].resolve("adapter/clf@v3").digest
    message = (
        f"no BLESSED blessing exists for adapter/clf@v3 (digest {digest}); its newest judgement, blessing/clf@v3, "
        "is NOT_BLESSED: run an evaluation gate on it first, or override with force (mlcrit promote --force "
        "--reason ...), which is recorded"
    )
    _every_door(world, "GateFailedError", message, candidate="adapter/clf@v3")


def test_the_policy_s_approval_is_required_at_every_door(world):
    message = (
        "moving 'production' of adapter/clf needs 1 approval(s) by alice, bob, carol (its policy), 0 given: request "
        "one (PromotionApprovalOperator, or mlcrit approvals request adapter/clf@v2 --alias production) and pass "
        "the decision as the approval"
    )
    _every_door(world, "GateFailedError", message, candidate="adapter/clf@v2")


def test_a_used_approval_is_refused_at_every_door(world):
    used = world["used"]
    history = world["store"].alias_history("adapter/clf", "production")
    entry = next(m for m in history if used in m.extra.get("approvals", []))
    message = (
        f"{used} was used already, by entry {entry.seq} of 'production' of adapter/clf (v1 -> v2): an approval is "
        "consumed by the move it allows; request a new one"
    )
    _every_door(world, "GateFailedError", message, candidate="adapter/clf@v2", approval=used)


def test_an_unknown_alias_is_refused_at_every_door(world):
    message = (
        "unknown alias 'prodution' of adapter/clf; known: production. Check the spelling, or create it explicitly "
        "(mlcrit promote --create-alias, promote(create=True), PromoteModelOperator(create_alias=True)) or declare "
        "it with a policy (mlcrit aliases policy set)"
    )
    _every_door(world, "ConfigError", message, candidate="adapter/clf@v2", alias="prodution")
    assert world["store"].alias_names("adapter/clf") == ["production"]


def test_a_forced_move_follows_the_policy(world):
    """Forcing: the policy lets only ops force. The CLI and the Python API refuse anyone else; the
    operator and the UI offer no way to force at all (a forged form field changes nothing)."""
    import inspect

    from airflow_mlcrit.operators import PromoteModelOperator

    message = f"{ME!r} may not force a move of 'production' of adapter/clf: its policy lets ops force"
    assert python_door(world, candidate="adapter/clf@v3", force=True) == ("GateFailedError", message)
    assert cli_door(world, candidate="adapter/clf@v3", force=True) == message
    assert "force" not in inspect.signature(PromoteModelOperator.__init__).parameters
    page = ui_door(world, candidate="adapter/clf@v3", extra={"force": "true"})
    assert "no BLESSED blessing exists for adapter/clf@v3" in page
    assert world["store"].alias_version("adapter/clf", "production") == 1


def test_the_requester_may_not_decide_nor_move_on_an_approval_of_their_own(world, tmp_path):
    """Deciding: the requester's own decision is refused by the Python API and the CLI (with their
    key); Airflow's REST API does not even ask them (tests/airflow/test_approval_operator.py: 403
    "not a respondent"). Moving: an approver cannot use their own approval to make the move, in
    the UI (where Airflow names the mover) and the Python API."""
    from airflow_mlcrit.core.cli import main

    store = world["store"]
    request = request_approval(store, "adapter/clf@v2", "production", requested_by="carol")
    message = f"'carol' requested {request.ref} and may not decide it: a second person must (four eyes)"
    with pytest.raises(MlcritError, match=re.escape(message)) as refused:
        decide_signed(store, str(request.ref), private_key=KEYS["carol"][0].encode(), approve=True, reason="mine")
    assert type(refused.value).__name__ == "GateFailedError"
    (tmp_path / "carol.key").write_text(KEYS["carol"][0])
    err = io.StringIO()
    args = ["--root", str(world["root"] / "store"), "approve", str(request.ref), "--reason", "mine"]
    with contextlib.redirect_stderr(err):
        assert main([*args, "--key", str(tmp_path / "carol.key")]) == 1
    assert err.getvalue().strip() == f"mlcrit: error: {message}"

    fresh = world["fresh"]
    mover = f"{fresh} was decided by 'alice', who is making this move: a second person must (four eyes)"
    assert python_door(world, candidate="adapter/clf@v2", approval=fresh, actor="alice") == ("GateFailedError", mover)
    assert str(escape(mover)) in ui_door(world, candidate="adapter/clf@v2", approval=fresh, user="alice")
    assert store.alias_version("adapter/clf", "production") == 1


def test_an_approval_made_in_airflow_is_confirmed_against_airflow_s_record_in_the_ui(world):
    """The approval step alone, answered by alice through Airflow's REST API; the decision is then
    used in the registry UI, which checks it against Airflow's own record of the answer (the
    store does not sign). A record that names another approver than Airflow recorded is refused."""

    client, tokens, store = world["client"], world["tokens"], world["store"]
    out: dict = {}

    def answer() -> None:
        try:
            run_id = wait_parked("test_mlcrit_approve_only", timeout=300)
            path = f"/api/v2/dags/test_mlcrit_approve_only/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
            body = {"chosen_options": ["approve"], "params_input": {"reason": "reviewed in Airflow"}}
            out["r"] = client.patch(path, json=body, headers={"Authorization": f"Bearer {tokens['alice']}"})
            if out["r"].status_code != 200:
                fail_waiting("test_mlcrit_approve_only")
        except BaseException as exc:
            out["error"] = exc
            fail_waiting("test_mlcrit_approve_only")  # dag.test() returns, the test reports the error

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    dr = run_dag("test_mlcrit_approve_only")
    thread.join(30)
    assert "error" not in out and out["r"].status_code == 200, out
    assert task_states(dr)["approve"][0] == "success"
    decision = max(store.versions("approval/clf"))
    ref = f"approval/clf@v{decision}"
    md = store.resolve(ref).metadata
    assert (md["decided_by"], md["identity"]["source"]) == ("alice", "airflow")
    with pytest.raises(MlcritError, match="which this unsigned store cannot prove by itself"):
        promote(store, "adapter/clf@v2", "production", reason="python, no Airflow", approval=ref)
    client.cookies.set("_token", tokens["editor"])
    try:
        page = client.get("/mlcrit/a/adapter/clf").text
        [token] = set(re.findall(r'name="token" value="([0-9a-f]{64})"', page))
        form = {"alias": "production", "version": "2", "reason": "approved in Airflow", "approval": ref}
        r = client.post("/mlcrit/a/adapter/clf/promote", data=form | {"token": token}, follow_redirects=False)
    finally:
        client.cookies.clear()
    assert r.status_code == 303, r.text[:600]
    move = store.alias_history("adapter/clf", "production")[-1]
    assert (move.to_version, move.actor, move.extra["approved_by"], move.extra["approvals"]) == (
        2,
        "editor",
        "alice",
        [ref],
    )
    rollback(store, "adapter/clf", "production", reason="back for the other tests", actor="pipeline")


def test_no_module_moves_an_alias_except_through_the_core_s_promotion():
    """The ledger's mechanisms (the store's move_alias, rollback, set_alias_policy, repair_alias)
    are called only by core/gating/promotion.py: a new door that moved an alias by itself would
    bypass the policy, and fails here."""
    movers = re.compile(r"\.(move_alias|set_alias_policy|repair_alias)\(|store\.rollback\(")
    allowed = {"airflow_mlcrit/core/gating/promotion.py", "airflow_mlcrit/core/artifacts/store.py"}
    offenders = []
    for path in sorted((REPO / "airflow_mlcrit").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if movers.search(line) and rel not in allowed:
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []
    promotion = (REPO / "airflow_mlcrit/core/gating/promotion.py").read_text()
    assert all(f".{m}(" in promotion for m in ("move_alias", "set_alias_policy", "repair_alias", "rollback"))
