"""The ML registry: a FastAPI app served by the Airflow api-server (under ``/mlcrit``) that renders
the artifact store's registry as HTML. It reads the store through the core (core/registry.py and
the store's API) and moves aliases only through the core's promotion rules.

Security (docs/ui.md): every route asks Airflow's auth manager. Reading needs permission to read
assets (every artifact is an Airflow asset); promoting and rolling back need permission to edit
them. Actions are POSTs that carry a token bound to the user and the artifact and are refused
from another origin. Pages never show the store's URI or credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_asset
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from airflow_mlcrit.exceptions import InvalidReferenceError

TEMPLATES = Path(__file__).parent / "templates"
PAGE = 50  # versions per page of an artifact
MOVES = 50  # alias moves on an artifact page, newest last
EVOLUTION = 30  # versions on an evolution page, newest last
EVALUATED = ("model", "adapter", "prompt")
READ = [Depends(requires_access_asset("GET"))]
EDIT = [Depends(requires_access_asset("PUT"))]


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["ref_path"] = _ref_path
    env.filters["size"] = human_size
    return env


def human_size(n: int | None) -> str:
    """Bytes as a person reads them: 1021058 -> "997.1 KiB"."""
    if n is None:
        return "-"
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def _ref_path(ref: str) -> str:
    """The artifact page of a reference, at its version: ``/a/kind/name#vN``."""
    from airflow_mlcrit.core.artifacts import parse_ref

    r = parse_ref(str(ref))
    return f"/a/{r.kind}/{quote(r.name, safe='')}" + (f"#v{r.version}" if r.version else "")


class Registry:
    """Per-app state: the store (opened on first use, from the provider's settings) and templates."""

    def __init__(self, store_factory: Callable[[], Any] | None = None):
        self._factory = store_factory
        self._store: tuple[tuple, Any] | None = None
        self.env = _templates()

    @property
    def store(self) -> Any:
        """The store, opened again when the settings that name it change."""
        if self._factory is not None:
            if self._store is None:
                self._store = ((), self._factory())
            return self._store[1]
        from airflow.configuration import conf

        from airflow_mlcrit.hooks.artifacts import ArtifactStoreHook

        conn_id = conf.get("mlcrit", "ui_store_conn_id", fallback="") or None
        settings = (
            conn_id,
            conf.get("mlcrit", "artifact_root", fallback=""),
            conf.get("mlcrit", "s3_endpoint_url", fallback=""),
        )
        if self._store is None or self._store[0] != settings:
            self._store = (settings, ArtifactStoreHook(store_conn_id=conn_id).get_store())
        return self._store[1]

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        airflow = root.rsplit("/", 1)[0] if root.endswith("/mlcrit") else ""
        html = self.env.get_template(template).render(root=root, airflow=airflow, page_script=PAGE_SCRIPT, **context)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)


# Pages are framed by the Airflow UI (same origin) and never load anything from elsewhere. Their one
# script is static/follow_airflow.js, inline and allowed by its hash alone (it follows Airflow's
# theme and timezone): no other script can run, whatever a page shows.
PAGE_SCRIPT = (Path(__file__).parent / "static" / "follow_airflow.js").read_text()
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(PAGE_SCRIPT.encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _secret() -> bytes:
    from airflow.configuration import conf

    secret = conf.get("api", "secret_key", fallback="") or conf.get("api_auth", "jwt_secret", fallback="")
    if not secret:
        raise HTTPException(500, "the ML registry needs [api] secret_key to protect its actions")
    return secret.encode()


def action_token(user: Any, key: str) -> str:
    """The token an action form carries: bound to the user and the artifact, so a page of one
    artifact cannot be used to move another's alias, nor one user's page by another."""
    return hmac.new(_secret(), f"{user.get_id()}|{key}".encode(), hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> None:
    """Refuse a cross-site POST: the browser's Sec-Fetch-Site, else the Origin header, must be ours."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"request from another origin refused ({origin})")
    if origin == "null" and site is None:
        raise HTTPException(403, "request from an opaque origin refused")


def _can_edit(user: Any) -> bool:
    return bool(get_auth_manager().is_authorized_asset(method="PUT", user=user))


def _key(kind: str, name: str) -> str:
    from airflow_mlcrit.core.artifacts.refs import parse_key

    try:
        k, n = parse_key(f"{kind}/{name}")
    except InvalidReferenceError as exc:  # a malformed name in the URL is the client's error
        raise HTTPException(404, str(exc)) from exc
    return f"{k}/{n}"


def create_app(store_factory: Callable[[], Any] | None = None) -> FastAPI:
    """The registry's FastAPI app; ``store_factory`` opens the store (default: the provider's
    ``[mlcrit]`` settings or ``ui_store_conn_id``)."""
    from airflow_mlcrit.exceptions import ArtifactConflictError, ArtifactIntegrityError, MlcritError

    app = FastAPI(title="ML registry (airflow-mlcrit)", docs_url=None, redoc_url=None, openapi_url=None)
    reg = Registry(store_factory)
    app.state.registry = reg

    @app.exception_handler(MlcritError)
    async def mlcrit_error(request: Request, exc: MlcritError) -> HTMLResponse:
        from airflow_mlcrit.exceptions import GateFailedError

        if isinstance(exc, ArtifactConflictError):
            status, title = 409, "Someone else changed this first"
        elif isinstance(exc, ArtifactIntegrityError):
            status, title = 500, "The store failed an integrity check"
        elif isinstance(exc, GateFailedError):
            status, title = 400, "Refused by the promotion rules"
        else:
            status, title = 400, "Refused"
        # the class, small, for whoever matches the page with the CLI's and the operator's errors
        return reg.render(
            request,
            "message.html",
            status,
            title=title,
            message=str(exc),
            error=type(exc).__name__,
            back=_back(request),
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (401, 403) and not request.url.path.rstrip("/").endswith(_FORMS):
            # the auth manager's answer on a page, as Airflow gives it
            return Response(json.dumps({"detail": exc.detail}), exc.status_code, media_type="application/json")
        title = {400: "Refused", 403: "Not allowed", 404: "Not found"}.get(exc.status_code, f"Error {exc.status_code}")
        return reg.render(
            request, "message.html", exc.status_code, title=title, message=str(exc.detail), back=_back(request)
        )

    @app.get("/", dependencies=READ)
    def index(request: Request, user: GetUserDep, q: str = "") -> HTMLResponse:
        store = reg.store
        rows = []
        has_approvals = False  # pending approvals show whatever the search
        terms = q.lower().split()
        for key, latest in store.catalog():  # each artifact's newest version, not all its versions
            has_approvals |= key.startswith("approval/")
            if terms and not all(t in key.lower() for t in terms):
                # every term must match the kind/name or an alias ("adapter production")
                names = [a.lower() for a in store.alias_names(key)]
                if not all(t in key.lower() or any(t in a for a in names) for t in terms):
                    continue
            kind, name = key.split("/", 1)
            aliases = sorted(store.aliases(key).items())
            rows.append({"key": key, "kind": kind, "name": name, "latest": latest, "aliases": aliases})
        kinds: dict[str, list] = {}
        for r in rows:
            kinds.setdefault(r["kind"], []).append(r)
        from airflow_mlcrit.core.gating.approval import pending
        from airflow_mlcrit.core.registry import DATASET_KINDS

        evolving = (*EVALUATED, *DATASET_KINDS)
        approvals = pending(store) if has_approvals else []
        return reg.render(
            request,
            "index.html",
            kinds=kinds,
            q=q,
            total=len(rows),
            evolving=evolving,
            approvals=approvals,
            decide_tokens={a["ref"]: action_token(user, a["ref"]) for a in approvals if a.get("run")},
        )

    @app.get("/a/{kind}/{name}", dependencies=READ)
    def artifact(
        request: Request, kind: str, name: str, user: GetUserDep, page: int = 1, moved: str = ""
    ) -> HTMLResponse:
        from airflow_mlcrit.core.registry import alias_spans

        key = _key(kind, name)
        store = reg.store
        shown, claimed = store.versions_window(key, PAGE, skip=(page - 1) * PAGE)
        if not shown and page == 1:
            raise HTTPException(404, f"{key} has no committed version")
        from airflow_mlcrit.core.gating import blesses

        rows, blessed = [], set()  # the forms offer this page's blessed versions and those aliases held
        for v in shown:
            m = store.resolve(f"{key}@v{v}")
            children = store.children(m.ref)
            verdict = _verdict(store, m, children) if kind in EVALUATED else None
            rows.append({"m": m, "children": sorted(str(c.ref) for c in children), "verdict": verdict})
            if kind in EVALUATED and any(blesses(c, m.digest) for c in children):
                blessed.add(v)
        held_now = store.aliases(key)
        every = sorted(
            (move for alias in sorted(held_now) for move in store.alias_history(key, alias)),
            key=lambda m: m.at,
        )
        # the newest MOVES moves, each with its blessing read: a page's cost follows what it shows,
        # not how often the model was promoted (mlcrit aliases history lists them all)
        moves = [{"move": m, "gate": _blessing_of(store, key, m)} for m in every[-MOVES:]]
        # rollback targets beyond this page: the versions those moves put in place on a BLESSED
        # blessing of their digest (the move recorded it; rollback checks again in the core)
        held = {x["move"].to_version for x in moves if (x["gate"] or {}).get("decision") == "BLESSED"}
        blessed |= (held - set(shown) - {None}) if kind in EVALUATED else set()
        blessed = sorted(blessed)
        done = None  # the confirmation of the move just made, read back from the store
        if moved and moved in held_now:
            last = store.alias_history(key, moved)[-1]
            done = {"alias": moved, "version": last.to_version, "actor": last.actor, "reason": last.reason}
        return reg.render(
            request,
            "artifact.html",
            done=done,
            alias_choices=store.alias_names(key),
            key=key,
            kind=kind,
            name=name,
            rows=rows,
            moves=moves,
            older_moves=len(every) - len(moves),
            spans=alias_spans(store, key),
            page=page,
            pages=(claimed + PAGE - 1) // PAGE,
            evaluated=kind in EVALUATED,
            can_edit=_can_edit(user) and kind in EVALUATED,
            blessed=blessed,
            aliases=sorted(held_now.items()),
            token=action_token(user, key),
        )

    @app.get("/e/{kind}/{name}", dependencies=READ)
    def evolution(request: Request, kind: str, name: str, metric: str = "", view: str = "difference") -> HTMLResponse:
        """Is each version better than the production it was judged against, where, and by how
        much? By default each chart plots, per version, the paired difference from the baseline
        that was evaluated beside it on the same golden set, with its interval: never one version's
        number beside another's measured on other data. ``view=values`` plots each version's own
        value instead, and every chart says that those come from each evaluation's own data."""
        from airflow_mlcrit.core.registry import DATASET_KINDS, dataset_history, model_history
        from airflow_mlcrit.plugins.charts import trajectory

        key = _key(kind, name)
        store = reg.store
        if kind in DATASET_KINDS:
            doc = dataset_history(store, key, last=EVOLUTION)
            return reg.render(request, "dataset.html", key=key, doc=doc, versions=doc["versions"])
        if view not in ("difference", "values"):
            raise HTTPException(404, f"view is difference or values, not {view!r}")
        doc = model_history(store, key, last=EVOLUTION)
        versions = doc["versions"]
        production = {s["version"] for s in doc["aliases"] if s["alias"] == "production"}
        metric = metric or ("accuracy" if "accuracy" in doc["metrics"] else (doc["metrics"] or [""])[0])
        if doc["metrics"] and metric not in doc["metrics"]:
            raise HTTPException(404, f"no evaluation of {key} has the metric {metric!r}; it has {doc['metrics']}")
        judged = [v for v in versions if v["gate"]]
        newest = judged[-1] if judged else None
        stopped = set((newest or {}).get("gate", {}).get("failed_slices", []))
        charts = []
        for slice_name in doc["slices"] if metric else []:
            points = []
            for v in versions:
                s = next((s for s in v["slices"] if s["name"] == slice_name), None) or {}
                part = "difference" if view == "difference" else "candidate"
                m = (s.get(part) or {}).get(metric) or {}
                against = (v["baseline"] or "").rsplit("@", 1)[-1]
                points.append(
                    {
                        "version": v["version"],
                        "label": f"v{v['version']} - {against}" if view == "difference" and against else None,
                        "value": m.get("value"),
                        "low": m.get("low"),
                        "high": m.get("high"),
                        "production": v["version"] in production,
                        "stopped": slice_name in (v["gate"] or {}).get("failed_slices", []),
                    }
                )
            if any(p["value"] is not None for p in points):
                latest = next((p for p in reversed(points) if p["value"] is not None), None)
                title = f"{metric} - baseline · {slice_name}" if view == "difference" else f"{metric} · {slice_name}"
                label = "same data per point" if view == "difference" else "each on its own data"
                charts.append(
                    {
                        "metric": metric,
                        "slice": slice_name,
                        "stopped": slice_name in stopped,
                        "latest": latest["value"] if latest else None,
                        "svg": trajectory(points, title=title, label=label, zero=view == "difference"),
                    }
                )
        # worst first: where the newest verdict stopped, then the lowest newest figure
        charts.sort(key=lambda c: (not c["stopped"], c["latest"] if c["latest"] is not None else float("inf")))
        return reg.render(
            request,
            "evolution.html",
            key=key,
            doc=doc,
            versions=versions,
            charts=charts,
            metric=metric,
            view=view,
            newest=newest,
        )

    @app.get("/c/{kind}/{name}", dependencies=READ)
    def compare(request: Request, kind: str, name: str, a: str = "production", b: str = "latest") -> HTMLResponse:
        """Two versions side by side (the page of ``mlcrit diff``): per-slice metrics on one golden
        set where an evaluation judged one against the other (else each on its own data, said so),
        worst change first; for datasets the statistics and drift; what each was made from, and
        the metadata that differs."""
        from airflow_mlcrit.core.registry import diff

        key = _key(kind, name)
        store = reg.store
        ma, mb = (store.resolve(f"{key}@{x if not x.isdigit() else 'v' + x}") for x in (a, b))
        doc = diff(store, str(ma.ref), str(mb.ref))
        if doc["what"] == "metrics":
            doc["metrics"].sort(key=lambda r: (r["metric"], r["change"] if r["change"] is not None else float("inf")))
        # the choices: the newest PAGE versions and the two shown (not the whole history)
        newest, _ = store.versions_window(key, PAGE)
        choices = sorted({*newest, ma.version, mb.version})
        return reg.render(request, "compare.html", key=key, kind=kind, name=name, doc=doc, a=ma, b=mb, versions=choices)

    @app.get("/l/{kind}/{name}", dependencies=READ)
    def lineage_page(request: Request, kind: str, name: str, at: str = "latest") -> HTMLResponse:
        """The lineage of one version, upstream (what it was made from) and downstream (what was
        made from it), laid out by Graphviz."""
        from airflow_mlcrit.core.lineage_graph import lineage
        from airflow_mlcrit.plugins.graph import render_svg

        key = _key(kind, name)
        m = reg.store.resolve(f"{key}@{at}")
        up, down = lineage(reg.store, str(m.ref), "upstream"), lineage(reg.store, str(m.ref), "downstream")
        nodes = {**up.nodes, **down.nodes}
        edges = list(dict.fromkeys([*up.edges, *down.edges]))
        root = request.scope.get("root_path", "").rstrip("/")
        svg = render_svg(str(m.ref), nodes, edges, link=lambda ref: root + _ref_path(ref))
        return reg.render(request, "lineage.html", key=key, m=m, at=at, svg=svg, nodes=sorted(nodes), edges=edges)

    @app.get("/report/{kind}/{name}/{version}", dependencies=READ)
    def report(kind: str, name: str, version: int) -> Response:
        key = _key(kind, name)
        if kind not in ("evaluation", "blessing"):
            raise HTTPException(404, "reports belong to evaluations and blessings")
        data = reg.store.read_bytes(f"{key}@v{version}", "report.html")  # verified against its digest
        # the report is the store's content: no script, no network, no form, whatever it holds
        headers = {
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            "X-Content-Type-Options": "nosniff",
        }
        return Response(data, media_type="text/html; charset=utf-8", headers=headers)

    @app.get("/ti/{dag_id}/{run_id}/{task_id}", dependencies=READ)
    def task_instance(
        request: Request, dag_id: str, run_id: str, task_id: str, user: GetUserDep, map_index: str = "-1"
    ) -> HTMLResponse:
        """The "Evaluation" view of a task instance: the evaluation (or gate) it committed.
        ``map_index`` is text: Airflow 3.3 fills ``{MAP_INDEX}`` in the view's URL only for mapped
        tasks and sends the placeholder itself for every other one (an int parameter answered
        those with a 422)."""
        _may_read_xcom(user, dag_id)
        store = reg.store
        index = int(map_index) if map_index.lstrip("-").isdigit() else -1
        refs = [r for _, _, r in _run_refs(dag_id, run_id, task_id, index)]
        shown = []
        for ref in refs:
            m = store.resolve(ref)
            if m.kind == "evaluation":
                doc = json.loads(store.read_bytes(m.ref, "evaluation.json"))
                shown.append({"m": m, "slices": doc["slices"], "metrics": doc.get("metrics", [])})
            elif m.kind == "blessing":
                from airflow_mlcrit.core.gating.blessing import read_blessing

                doc = read_blessing(store, m.ref)
                shown.append({"m": m, "decision": doc.get("decision"), "checks": doc.get("checks", [])})
        return reg.render(request, "ti.html", dag_id=dag_id, run_id=run_id, task_id=task_id, refs=refs, shown=shown)

    @app.get("/run/{dag_id}/{run_id}", dependencies=READ)
    def dag_run(request: Request, dag_id: str, run_id: str, user: GetUserDep) -> HTMLResponse:
        """The "Artifacts" view of a DAG run: every version its tasks named in their results (what
        they wrote, or used), and what each of those was made from (what the task read: the
        evaluate task's candidate, baseline and golden set)."""
        _may_read_xcom(user, dag_id)
        store = reg.store
        rows, seen = [], set()
        for t, i, ref in _run_refs(dag_id, run_id):
            m = store.resolve(ref)
            made = m.producer.get("run_id") == run_id and m.producer.get("dag_id") == dag_id
            rows.append({"task_id": t, "map_index": i, "m": m, "role": "wrote" if made else "used"})
            seen.add((t, i, str(m.ref)))
        for row in list(rows):
            if row["role"] != "wrote":
                continue
            for parent in (p["ref"] for p in row["m"].parents):
                if (row["task_id"], row["map_index"], parent) not in seen:
                    seen.add((row["task_id"], row["map_index"], parent))
                    rows.append({**row, "m": store.resolve(parent), "role": "read"})
        order = {"read": 0, "used": 1, "wrote": 2}
        rows.sort(key=lambda r: (r["task_id"], r["map_index"], order[r["role"]], str(r["m"].ref)))
        return reg.render(request, "run.html", dag_id=dag_id, run_id=run_id, rows=rows)

    @app.post("/approvals/{name}/{version}", dependencies=READ)
    def decide_action(
        request: Request,
        name: str,
        version: int,
        user: GetUserDep,
        option: str = Form(...),
        reason: str = Form(""),
        token: str = Form(""),
    ) -> Response:
        """Answer an approval request that an Airflow task waits on, as the logged-in user: the
        answer goes to the task's human-in-the-loop request, where Airflow checks that this user
        was asked (the requester is not), exactly as its REST API does; the task then records
        the decision under the core's rules (core/gating/approval.py)."""
        from airflow_mlcrit.core.gating.approval import check_decidable

        _same_origin(request)
        ref = f"approval/{_key('approval', name).split('/', 1)[1]}@v{version}"
        if not hmac.compare_digest(token, action_token(user, ref)):
            raise HTTPException(403, "the form's token does not match: reload the page and try again")
        if option not in ("approve", "reject"):
            raise HTTPException(400, f"the answer is approve or reject, not {option!r}")
        req = reg.store.resolve(ref)
        run = req.metadata.get("run")
        if req.kind != "approval" or not isinstance(run, dict):
            raise HTTPException(
                400, f"{ref} is not a request an Airflow task waits on: decide it with mlcrit approve --key"
            )
        check_decidable(reg.store, req, approve=option == "approve", reason=reason)
        answer_in_airflow(user, run, option, reason.strip())
        return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)

    @app.post("/a/{kind}/{name}/rollback", dependencies=EDIT)
    def rollback_action(
        request: Request,
        kind: str,
        name: str,
        user: GetUserDep,
        alias: str = Form(...),
        to_version: int = Form(...),
        reason: str = Form(""),
        approval: str = Form(""),
        token: str = Form(""),
    ) -> Response:
        from airflow_mlcrit.core.gating import rollback

        key = _check_action(request, user, kind, name, token, reason)
        rollback(
            reg.store,
            key,
            alias,
            reason=reason.strip(),
            to_version=to_version,
            actor=user.get_name(),
            approval=_approvals(approval),
            attest=attest_in_airflow,
            extra={"via": "ML registry UI"},
        )
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/a/{kind}/{quote(name)}?moved={quote(alias)}", status_code=303)

    @app.post("/a/{kind}/{name}/promote", dependencies=EDIT)
    def promote_action(
        request: Request,
        kind: str,
        name: str,
        user: GetUserDep,
        alias: str = Form(...),
        version: int = Form(...),
        reason: str = Form(""),
        approval: str = Form(""),
        token: str = Form(""),
    ) -> Response:
        from airflow_mlcrit.core.gating import promote

        key = _check_action(request, user, kind, name, token, reason)
        promote(
            reg.store,
            f"{key}@v{version}",
            alias.strip(),
            reason=reason.strip(),
            actor=user.get_name(),
            approval=_approvals(approval),
            attest=attest_in_airflow,
            extra={"via": "ML registry UI"},
        )
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/a/{kind}/{quote(name)}?moved={quote(alias.strip())}", status_code=303)

    return app


_FORMS = ("/promote", "/rollback")  # the forms' refusals (a stale token) render as pages, with a way back


def _back(request: Request) -> str:
    """Where an error page links back to: the page the form was on (a same-origin Referer), else
    the artifact a form action belongs to, else the registry's index."""
    root = request.scope.get("root_path", "").rstrip("/")
    referer = request.headers.get("referer")
    if referer and urlsplit(referer).netloc == request.headers.get("host") and urlsplit(referer).path.startswith(root):
        parts = urlsplit(referer)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    path = request.url.path
    if path.endswith(_FORMS):
        return path.rsplit("/", 1)[0]
    return f"{root}/"


def _verdict(store: Any, m: Any, children: list[Any]) -> dict[str, Any] | None:
    """The newest judgement of version ``m`` as a candidate (from the blessings among its
    children), with the version it was judged against."""
    from airflow_mlcrit.core.registry import judgement

    judged = [c for c in children if c.kind == "blessing" and c.metadata.get("candidate") == str(m.ref)]
    if not judged:
        return None
    newest = max(judged, key=lambda c: (c.created_at, c.version))
    base = newest.metadata.get("baseline")
    return judgement(store, newest) | {"baseline": int(base.rsplit("@v", 1)[1]) if base and "@v" in base else None}


def _approvals(text: str) -> list[str]:
    """The approval references a form names (comma- or space-separated)."""
    return [r for r in text.replace(",", " ").split() if r]


def answer_in_airflow(user: Any, run: dict[str, Any], option: str, reason: str) -> None:
    """Answer the human-in-the-loop request of the task ``run`` as ``user``, through Airflow's own
    handler of ``PATCH .../hitlDetails`` (the same checks: the DAG's HITL permission, that the user
    was asked, that no one answered yet), in this api-server's metadata database session."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    dag_id = run.get("dag_id")
    if not get_auth_manager().is_authorized_dag(
        method="PUT", access_entity=DagAccessEntity.HITL_DETAIL, details=DagDetails(id=dag_id), user=user
    ):
        raise HTTPException(403, f"not allowed to answer the required actions of DAG {dag_id!r}")
    payload = UpdateHITLDetailPayload(chosen_options=[option], params_input={"reason": reason})
    with create_session() as session:
        update_hitl_detail(
            dag_id=dag_id,
            dag_run_id=run.get("run_id"),
            task_id=run.get("task_id"),
            update_hitl_detail_payload=payload,
            user=user,
            session=session,
            map_index=int(run.get("map_index", -1)),
        )


def attest_in_airflow(decision: Any) -> None:
    """Confirm a decision made in Airflow against Airflow's own record of the answer: the
    human-in-the-loop row of the task it names, in the metadata database this api-server reads
    (which a writer of the artifact store cannot forge)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_mlcrit.exceptions import GateFailedError

    md = decision.metadata
    run = (md.get("identity") or {}).get("run") or {}
    with create_session() as session:
        row = session.execute(
            select(HITLDetail.responded_by, HITLDetail.chosen_options)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(
                TaskInstance.dag_id == run.get("dag_id"),
                TaskInstance.run_id == run.get("run_id"),
                TaskInstance.task_id == run.get("task_id"),
                TaskInstance.map_index == run.get("map_index", -1),
            )
        ).first()
    user = (row.responded_by or {}).get("id") if row is not None else None
    if row is None or user != md.get("decided_by") or list(row.chosen_options or []) != ["approve"]:
        raise GateFailedError(
            f"{decision.ref} says {md.get('decided_by')!r} approved in task {run.get('task_id')} of "
            f"{run.get('dag_id')} run {run.get('run_id')}, but Airflow has no such answer: refused"
        )


def _may_read_xcom(user: Any, dag_id: str) -> None:
    """The task results of a DAG are read from its XComs: the user must be allowed to read them."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    if not get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.XCOM, details=DagDetails(id=dag_id), user=user
    ):
        raise HTTPException(403, f"not allowed to read the task results of DAG {dag_id!r}")


def _refs_in(value: Any) -> list[str]:
    """Artifact references (kind/name@vN) anywhere in an operator's result."""
    from airflow_mlcrit.core.artifacts import parse_ref

    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs_in(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in _refs_in(v)]
    if isinstance(value, str) and "/" in value and "@v" in value and len(value) < 300:
        try:
            ref = parse_ref(value)
        except InvalidReferenceError:  # a string that only looks like a reference
            return []
        return [str(ref)] if ref.version is not None else []
    return []


def _run_refs(
    dag_id: str, run_id: str, task_id: str | None = None, map_index: int | None = None
) -> list[tuple[str, int, str]]:
    """(task_id, map_index, ref) of every versioned artifact named in the run's task results."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(
                run_id=run_id, key="return_value", dag_ids=dag_id, task_ids=task_id, map_indexes=map_index
            )
        ).all()
        found = [(r.task_id, r.map_index, XComModel.deserialize_value(r)) for r in rows]
    out: list[tuple[str, int, str]] = []
    for task, index, value in sorted(found, key=lambda x: (x[0], x[1])):
        for ref in dict.fromkeys(_refs_in(value)):
            out.append((task, index, ref))
    return out


def _check_action(request: Request, user: Any, kind: str, name: str, token: str, reason: str) -> str:
    _same_origin(request)
    key = _key(kind, name)
    if kind not in EVALUATED:
        raise HTTPException(400, f"aliases of a {kind} are not moved from the registry")
    if not hmac.compare_digest(token, action_token(user, key)):
        raise HTTPException(403, "the form's token does not match: reload the page and try again")
    if not reason.strip():
        raise HTTPException(400, "a reason is required: it is recorded in the alias history")
    return key


def _blessing_of(store: Any, key: str, move: Any) -> dict[str, Any] | None:
    """The blessing a move recorded, with its decision and failed thresholds; for a move that
    recorded none (a rollback), the BLESSED blessing its target holds, marked as found now."""
    from airflow_mlcrit.core.gating.blessing import find_blessing, read_blessing

    ref, found_now = (move.extra or {}).get("blessing"), False
    if not ref and move.to_version:
        target = find_blessing(store, f"{key}@v{move.to_version}")
        ref, found_now = (str(target.ref) if target is not None else None), True
    if not ref:
        return None
    doc = read_blessing(store, ref)
    return {"ref": ref, "decision": doc.get("decision"), "failures": doc.get("failures", []), "found_now": found_now}
