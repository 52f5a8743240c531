"""PromotionApprovalOperator: four-eyes approval of a blessed candidate as an Airflow
human-in-the-loop task. It commits an approval request (core/gating/approval.py), waits for a
person's answer without holding a worker slot (Airflow 3.3+ parks the task in `awaiting_input`;
older versions defer to the triggerer), and records the decision under the core's rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from airflow_mlcrit.exceptions import ConfigError

REQUEST_KEY = "approval_request"


class PromotionApprovalOperator(HITLOperator):
    """Ask the approvers of the alias's policy to approve moving ``alias`` to the blessed
    ``candidate``.

    Who may approve, how many approvals a move needs and how long a request stays open come from
    the alias policy in the store (``mlcrit aliases policy set``; core/gating/policy.py), never
    from the DAG or a run param chosen by the person who triggers the run. The request names the
    candidate and the version it would replace, the gate's checks, the slices whose decision
    hinges on the interval and those too small to judge, and a link to the candidate's page in
    the ML registry. An approver answers approve or reject with a reason, in the Airflow UI's
    required actions, through the REST API or with ``mlcrit approve`` / ``mlcrit reject`` (which
    answer through that API): Airflow authenticates them. The user who triggered the run is not
    asked and may not answer. The answer is recorded as an ``approval`` artifact; an approval
    returns ``{"approval": ref, ...}`` for ``PromoteModelOperator(approval=)``, a rejection skips
    the rest of the run. No answer in time: the request is recorded EXPIRED, the task fails,
    nothing is promoted. An alias whose policy asks for no approval: the task returns
    ``{"approval": None, "state": "NOT_REQUIRED"}`` and asks no one.

    :param candidate: the blessed version to promote. (templated)
    :param alias: the alias it would move. (templated)
    :param blessing: the blessing to bind; default: the candidate's newest judgement for the alias,
        which must be BLESSED. (templated)
    :param registry_url: the ML registry's base URL for the request's link (default: the path
        under the api-server, ``/mlcrit``).
    :param store_conn_id: connection of the artifact store; default: the provider's settings.
    """

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "candidate", "alias", "blessing")

    def __init__(
        self,
        *,
        candidate: str,
        alias: str = "production",
        blessing: str | None = None,
        registry_url: str = "/mlcrit",
        store_conn_id: str | None = None,
        **kwargs: Any,
    ):
        for gone in ("approvers", "allow_self_approval", "expires_after_hours"):
            if gone in kwargs:
                raise ConfigError(
                    f"PromotionApprovalOperator({gone}=) is gone: who approves, and for how long a request stays "
                    "open, is the alias policy's (mlcrit aliases policy set KIND/NAME ALIAS --approvals N "
                    "--approvers a,b), so that the person who triggers a run cannot choose it"
                )
        kwargs.setdefault("subject", "Approve the promotion of a blessed candidate")
        given = kwargs.pop("params", None)  # the DAG's, passed in by Airflow: the form asks only for the reason
        params = given if isinstance(given, ParamsDict) else ParamsDict(given or {})
        params["reason"] = Param("", type="string", description="Why (required): kept with the decision")
        super().__init__(options=["approve", "reject"], params=params, **kwargs)
        self.candidate, self.alias, self.blessing = candidate, alias, blessing
        self.registry_url, self.store_conn_id = registry_url.rstrip("/"), store_conn_id

    def _store(self) -> Any:
        from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook

        return ArtifactStoreHook(self.store_conn_id).get_store()

    def execute(self, context: Any) -> Any:
        from airflow_mlcrit.core.gating.approval import request_approval
        from airflow_mlcrit.core.gating.policy import policy_of

        store = self._store()
        target = store.resolve(self.candidate)
        policy = policy_of(store, f"{target.kind}/{target.name}", self.alias)
        if policy is None or policy.approvals == 0:
            self.log.info("the policy of %r asks for no approval: %s needs none to be promoted", self.alias, target.ref)
            return {"approval": None, "state": "NOT_REQUIRED"}
        if policy.approvals > 1:
            raise ConfigError(
                f"the policy of {self.alias!r} asks for {policy.approvals} approvals; this task collects one: "
                "use one PromotionApprovalOperator per approval and pass them all to PromoteModelOperator(approval=)"
            )
        dag_run = context["dag_run"]
        requested_by = getattr(dag_run, "triggering_user_name", None) or "scheduler"
        # four eyes in Airflow too: the requester is not offered the form, and the API refuses
        # their answer ("not a respondent"); decide() checks again
        respondents = [a for a in policy.approvers if a != requested_by]
        if not respondents:
            raise ConfigError(
                f"{requested_by!r} triggered this run and is the policy's only approver: a second person must "
                "approve (four eyes)"
            )
        self.assigned_users = [{"id": a, "name": a} for a in respondents]
        self.response_timeout = timedelta(hours=policy.expires_after_hours)
        ti = context["ti"]
        run = {**_run(context), "task_id": self.task_id, "map_index": ti.map_index}  # where the CLI answers
        request = request_approval(
            store, str(target.ref), self.alias, requested_by=requested_by, blessing=self.blessing, extra={"run": run}
        )
        context["ti"].xcom_push(key=REQUEST_KEY, value=str(request.ref))
        md = request.metadata
        self.subject = f"Promote {md['candidate']} to {md['alias']}?"
        self.body = request_body(store, request, self.registry_url)
        self.log.info("%s asks %s to approve %s for %r", request.ref, md["approvers"], md["candidate"], md["alias"])
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.exceptions import AirflowSkipException

        from airflow_mlcrit.core.gating.approval import decide

        request = context["ti"].xcom_pull(task_ids=self.task_id, key=REQUEST_KEY)
        if event.get("error_type") == "timeout":  # the scheduler's sweep, at response_timeout
            from airflow_mlcrit.core.gating.approval import expire

            expired = expire(self._store(), request, extra={"run": _run(context)})
            self.log.error("%s: no one decided %s in time, nothing is promoted", expired.ref, request)
        answer = super().execute_complete(context, event)  # a timeout raises: nothing is promoted
        user = answer["responded_by_user"]
        user_id = str(user["id"] if isinstance(user, dict) else user.id)
        approve = list(answer["chosen_options"]) == ["approve"]
        ti = context["ti"]
        decision = decide(
            self._store(),
            request,
            user=user_id,  # as Airflow authenticated the answer
            approve=approve,
            reason=str((answer["params_input"] or {}).get("reason") or ""),
            airflow_run={**_run(context), "task_id": self.task_id, "map_index": ti.map_index},
            extra={"run": _run(context)},
        )
        md = decision.metadata
        if not approve:
            raise AirflowSkipException(f"{decision.ref}: {md['candidate']} REJECTED by {user_id}: {md['reason']}")
        self.log.info("%s: %s APPROVED by %s: %s", decision.ref, md["candidate"], user_id, md["reason"])
        return {"approval": str(decision.ref), "state": md["state"], "decided_by": user_id, "reason": md["reason"]}


def _run(context: Any) -> dict[str, Any]:
    return {"dag_id": context["dag_run"].dag_id, "run_id": context["dag_run"].run_id}


def request_body(store: Any, request: Any, registry_url: str) -> str:
    """The request as the approver reads it (Markdown): what moves, what the gate said, where the
    decision hinges on the interval, what it could not judge, and where to look."""
    import json

    from airflow_mlcrit.core.gating.decide import hinging_checks

    md = request.metadata
    blessing = json.loads(store.read_bytes(md["blessing"], "blessing.json"))
    key = md["candidate"].split("@")[0]
    lines = [
        f"**{md['candidate']}** would replace **{md['baseline'] or 'nothing (no production yet)'}** "
        f"as `{md['alias']}`. Requested by {md['requested_by']}; expires {md['expires_at']}.",
        "",
        f"Gate: **{blessing.get('decision')}** ({md['blessing']})",
        "",
    ]
    lines += [f"- {c['status'].upper()}: {c['message']}" for c in blessing.get("checks", [])]
    hinge = hinging_checks(blessing.get("checks", []))
    under = [c for c in blessing.get("checks", []) if c.get("underpowered")]
    if hinge:
        lines += ["", "Decided by the interval, not the point estimate:"] + [f"- {c['message']}" for c in hinge]
    if under:
        lines += ["", "Too few rows to judge:"] + [f"- {c['message']}" for c in under]
    lines += ["", f"Evidence: {registry_url}/e/{key} (evolution), {registry_url}/a/{key} (versions and aliases)"]
    return "\n".join(lines)
