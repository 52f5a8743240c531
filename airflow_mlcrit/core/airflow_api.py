"""The few calls of Airflow's REST API (v2) that the CLI makes: answering a human-in-the-loop
request for a task that waits for it, and reading that task's state. Plain urllib, no Airflow
import: the CLI runs where Airflow is not installed. The token is a user's API token (``POST
<url>/auth/token``); Airflow, not this code, decides whether that user may answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from airflow_mlcrit.exceptions import AirflowApiError


def _task_path(run: dict[str, Any]) -> str:
    quote = lambda s: urllib.parse.quote(str(s), safe="")  # noqa: E731 (run ids hold ':' and '+')
    return f"/api/v2/dags/{quote(run['dag_id'])}/dagRuns/{quote(run['run_id'])}/taskInstances/{quote(run['task_id'])}"


def _call(url: str, token: str, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = None
        raise AirflowApiError(f"Airflow answered {exc.code} to {method} {path}: {detail or exc.reason}") from None
    except OSError as exc:
        raise AirflowApiError(f"cannot reach Airflow's API at {url}: {exc}") from None


def answer_hitl(url: str, token: str, run: dict[str, Any], option: str, params: dict[str, Any]) -> dict[str, Any]:
    """Answer the human-in-the-loop request of the task ``run`` ({dag_id, run_id, task_id,
    map_index}) with ``option`` and ``params``; returns Airflow's record of the answer."""
    path = f"{_task_path(run)}/{int(run.get('map_index', -1))}/hitlDetails"
    return _call(url, token, "PATCH", path, {"chosen_options": [option], "params_input": params})


def task_state(url: str, token: str, run: dict[str, Any]) -> str | None:
    path = _task_path(run) + (f"/{run['map_index']}" if run.get("map_index", -1) >= 0 else "")
    return _call(url, token, "GET", path).get("state")


def hitl_answer(url: str, token: str, run: dict[str, Any]) -> dict[str, Any]:
    """Airflow's record of the answer to the human-in-the-loop request of the task ``run``."""
    path = f"{_task_path(run)}/{int(run.get('map_index', -1))}/hitlDetails"
    return _call(url, token, "GET", path)


def attest_decision(url: str, token: str) -> Any:
    """An ``attest`` for promote(): confirms that Airflow itself recorded an approval decision, as
    the decision says (its user approved the task it names), through the REST API as the token's
    user. An unsigned store cannot prove that on its own (core/gating/approval.py)."""

    def attest(decision: Any) -> None:
        md = decision.metadata
        run = (md.get("identity") or {}).get("run") or {}
        answer = hitl_answer(url, token, run)
        user = (answer.get("responded_by_user") or {}).get("id")
        if user != md.get("decided_by") or list(answer.get("chosen_options") or []) != ["approve"]:
            raise AirflowApiError(
                f"{decision.ref} says {md.get('decided_by')!r} approved in task {run.get('task_id')} of "
                f"{run.get('dag_id')} run {run.get('run_id')}, but Airflow recorded "
                f"{answer.get('chosen_options')} by {user!r}: refused"
            )

    return attest
