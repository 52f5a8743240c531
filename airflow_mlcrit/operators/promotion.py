"""Promotion and rollback operators: thin glue over core.gating.promotion, where the alias policy
(blessing, approvals, who may force) is enforced for every door."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_mlcrit.operators.base import MlcritBaseOperator
from airflow_mlcrit.operators.results import AliasMoveResult, shaped


class _AliasOperator(MlcritBaseOperator):
    def _recorded_move(self, context: Any, key: str, alias: str) -> Any:
        """The move an earlier try of this task instance recorded in the alias history (it died
        before reporting success), for the retry to return instead of failing on the moved alias."""
        run = self.producer(context)
        same = ("dag_id", "run_id", "task_id", "map_index")
        for move in reversed(self.store.alias_history(key, alias)):
            earlier = (move.extra or {}).get("run") or {}
            if all(earlier.get(k) == run[k] for k in same) and earlier.get("try_number") != run["try_number"]:
                self.log.info(
                    "try %s of this task instance already moved %s@%s to v%s (history entry %s): returning that move",
                    earlier.get("try_number"),
                    key,
                    alias,
                    move.to_version,
                    move.seq,
                )
                return move
        return None

    def _record(self, move: Any, blessing: Any) -> AliasMoveResult:
        from airflow_mlcrit.core.lineage import facet

        self.lineage.run_facets["mlcrit_alias_move"] = facet(
            "mlcrit_alias_move",
            artifact=f"{move.kind}/{move.name}",
            alias=move.alias,
            fromVersion=move.from_version,
            toVersion=move.to_version,
            reason=move.reason,
            forced=move.forced,
            rollback=bool(move.extra.get("rollback")),
            blessing=str(blessing.ref) if blessing is not None else move.extra.get("blessing"),
            actor=move.actor,
            seq=move.seq,
            entryDigest=move.digest,
            **(
                {
                    "approval": move.extra["approval"],
                    "approvals": move.extra.get("approvals", [move.extra["approval"]]),
                    "approvedBy": move.extra["approved_by"],
                    "approvalReason": move.extra["approval_reason"],
                }
                if move.extra.get("approval")
                else {}
            ),
        )
        target = self.store.resolve(f"{move.kind}/{move.name}@v{move.to_version}")
        self.lineage.add_input(self.store, target)
        before = f"v{move.from_version}" if move.from_version else "-"
        self.log.info(
            "%s/%s@%s: %s -> v%s (%s)", move.kind, move.name, move.alias, before, move.to_version, move.reason
        )
        key = f"{move.kind}/{move.name}"
        return shaped(
            AliasMoveResult,
            ref=str(target.ref),
            uri=target.uri,
            digest=target.digest,
            summary=move.to_dict(),
            alias=f"{key}@{move.alias}",
            previous=f"{key}@v{move.from_version}" if move.from_version else None,
        )


class PromoteModelOperator(_AliasOperator):
    """Move an alias (default ``production``) to the candidate under the alias's policy
    (core/gating/policy.py): a BLESSED blessing for exactly its digest (the given ``blessing`` or
    the newest one found) and the approvals the policy asks for. CAS on the alias; the move
    records reason, run, blessing and approvals in the alias history and in lineage.

    :param candidate: the ``model`` / ``adapter`` / ``prompt`` version to promote. (templated)
    :param alias: the alias to move. (templated)
    :param blessing: a ``blessing`` reference; default: the newest blessing of the candidate. (templated)
    :param reason: recorded in the alias history. (templated)
    :param approval: the APPROVED ``approval`` decision(s) the move uses (PromotionApprovalOperator's
        ``approval``); each is consumed by the move. Where the store does not sign its records, a
        decision made in Airflow is confirmed against the approval task's result in this DAG run.
        (templated)
    :param create_alias: allow the first move of an alias that has neither a history nor a policy
        (otherwise refused, so that a typo never creates an alias).
    """

    template_fields: Sequence[str] = (
        *MlcritBaseOperator.template_fields,
        "candidate",
        "alias",
        "blessing",
        "reason",
        "approval",
    )

    def __init__(
        self,
        *,
        candidate: str,
        alias: str = "production",
        blessing: str | None = None,
        reason: str = "blessed by the evaluation gate",
        approval: str | Sequence[str] | None = None,
        create_alias: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.candidate, self.alias, self.blessing, self.reason = candidate, alias, blessing, reason
        self.approval, self.create_alias = approval, create_alias

    def execute(self, context: Any) -> AliasMoveResult:
        from airflow_mlcrit.core.gating import promote

        target = self.resolve_input(self.candidate)  # @latest: the version this DAG run resolved
        move = self._recorded_move(context, f"{target.kind}/{target.name}", self.alias)
        if move is not None:
            proof = self.store.resolve(move.extra["blessing"]) if move.extra.get("blessing") else None
            if proof is not None:
                self.lineage.add_input(self.store, proof)
            return self._record(move, proof)
        approvals = [self.approval] if isinstance(self.approval, str) else list(self.approval or ())
        approvals = [a for a in approvals if a and a != "None"]
        move, proof = promote(
            self.store,
            str(target.ref),  # the version resolved above, once: @latest cannot move in between
            self.alias,
            reason=self.reason,
            blessing=self.blessing,
            actor=f"airflow:{context['ti'].dag_id}/{context['ti'].run_id}",
            extra={"run": self.producer(context)},
            approval=approvals,
            create=self.create_alias,
            attest=lambda decision: attest_in_run(context, decision),
        )
        for ref in approvals:
            self.lineage.add_input(self.store, self.store.resolve(ref))
        if proof is not None:
            self.lineage.add_input(self.store, proof)
            if proof.metadata.get("model"):
                self.log.info(
                    "%s was blessed with the model %s (%s)",
                    target.ref,
                    proof.metadata["model"],
                    proof.metadata.get("model_digest") or proof.metadata.get("endpoint"),
                )
        return self._record(move, proof)


def attest_in_run(context: Any, decision: Any) -> None:
    """Confirm a decision made in Airflow against Airflow's own record of it: the approval task of
    this DAG run returned it (its XCom, in Airflow's metadata database, which a writer of the
    artifact store cannot forge) with the same approver."""
    from airflow_mlcrit.exceptions import GateFailedError

    md = decision.metadata
    run = (md.get("identity") or {}).get("run") or {}
    here = context["dag_run"]
    if (run.get("dag_id"), run.get("run_id")) != (here.dag_id, here.run_id):
        raise GateFailedError(
            f"{decision.ref} was decided in another DAG run ({run.get('dag_id')} {run.get('run_id')}): on an unsigned "
            "store a decision made in Airflow is used by the promote task of its own run"
        )
    result = context["ti"].xcom_pull(task_ids=run.get("task_id"), map_indexes=run.get("map_index", -1))
    if not isinstance(result, dict) or (result.get("approval"), result.get("decided_by")) != (
        str(decision.ref),
        md.get("decided_by"),
    ):
        raise GateFailedError(
            f"{decision.ref} says {md.get('decided_by')!r} approved in task {run.get('task_id')}, but that task's "
            f"result in this run is {result!r}: refused"
        )


class RollbackModelOperator(_AliasOperator):
    """Move an alias back to the previous blessed version (or ``to_version``, which must have a
    blessing), with a reason recorded in the alias history and lineage.

    :param artifact: ``kind/name`` whose alias to move. (templated)
    :param alias: the alias to move back. (templated)
    :param to_version: target version; default: the previous blessed one. (templated)
    :param reason: recorded in the alias history. (templated)
    """

    template_fields: Sequence[str] = (*MlcritBaseOperator.template_fields, "artifact", "alias", "to_version", "reason")

    def __init__(
        self,
        *,
        artifact: str,
        reason: str,
        alias: str = "production",
        to_version: int | str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.artifact, self.alias, self.to_version, self.reason = artifact, alias, to_version, reason

    def execute(self, context: Any) -> AliasMoveResult:
        from airflow_mlcrit.core.gating import rollback

        move = self._recorded_move(context, self.artifact, self.alias)
        if move is not None:
            return self._record(move, None)
        version = None if self.to_version in (None, "", "None") else int(str(self.to_version).lstrip("v"))
        move = rollback(
            self.store,
            self.artifact,
            self.alias,
            reason=self.reason,
            to_version=version,
            actor=f"airflow:{context['ti'].dag_id}/{context['ti'].run_id}",
            extra={"run": self.producer(context)},
        )
        return self._record(move, None)
