"""`mlcrit`: inspect and manage the artifact store from a shell (no Airflow needed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from airflow_mlcrit.core.artifacts import ArtifactStore, Manifest, open_store, parse_ref
from airflow_mlcrit.core.config import embedded_default_root, root_from_env, signer_from_env
from airflow_mlcrit.exceptions import ArtifactIntegrityError, ConfigError, MlcritError


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [[c.upper() for c in columns], ["-" * w for w in widths], *cells]
    return "\n".join(fmt.format(*line).rstrip() for line in lines)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _kv(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta expects KEY=VALUE, got {pair!r}")
        try:
            # numbers, booleans and JSON stay typed; NaN and Infinity are not JSON: kept as text
            out[key] = json.loads(value, parse_constant=lambda name: name)
        except ValueError:
            out[key] = value
    return out


def _num(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def _value(m: dict[str, Any] | None) -> str:
    """A metric and its interval: 0.8125 [0.7900, 0.8300]."""
    if not m or m["value"] is None:
        return "undefined"
    if m.get("low") is None:
        return _num(m["value"])
    return f"{m['value']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def _metric_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per version, slice and metric; the gate column says where a candidate was stopped."""
    current: dict[int, list[str]] = {}
    for s in doc["aliases"]:
        if s["until"] is None:
            current.setdefault(s["version"], []).append(s["alias"])
    rows = []
    for v in doc["versions"]:
        base = {
            "version": f"v{v['version']}",
            "created_at": v["created_at"],
            "aliases": ",".join(current.get(v["version"], [])),
        }
        if not v["slices"]:
            rows.append(base | {"slice": "-", "gate": "not evaluated"})
        gate = v["gate"] or {}
        for s in v["slices"]:
            for metric, m in s["candidate"].items():
                d = (s["difference"] or {}).get(metric)
                verdict = gate.get("decision") or ""
                if s["name"] in gate.get("failed_slices", []):
                    verdict += " (failed here)"
                rows.append(
                    base
                    | {
                        "slice": s["name"],
                        "metric": metric,
                        "value": _num(m["value"]) if m else "-",
                        "interval": f"[{m['low']:.4f}, {m['high']:.4f}]" if m and m["low"] is not None else "-",
                        "change": f"{_signed(d['value'])} [{d['low']:+.4f}, {d['high']:+.4f}]"
                        if d and d["value"] is not None and d["low"] is not None
                        else "-",
                        "gate": verdict,
                    }
                )
    return rows


def _statistics_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for v in doc["versions"]:
        validation = (v["validation"] or {}).get("status") or "-"
        if not v["columns"]:
            rows.append(
                {"version": f"v{v['version']}", "column": "-", "validation": validation, "kind": "no statistics"}
            )
        for name, c in v["columns"].items():
            d = v["drift"].get(name)
            quantiles = c.get("quantiles") or {}
            rows.append(
                {
                    "version": f"v{v['version']}",
                    "column": name,
                    "kind": c["kind"],
                    "missing": c["missing"],
                    "distinct": c.get("distinct", "-"),
                    "mean": _num(c.get("mean")),
                    "median": _num(quantiles.get("0.5")),
                    "top": ",".join(f"{t[0]}={t[1]}" for t in (c.get("top") or [])[:3]) or "-",
                    "drift": f"{d['measure']}={_num(d['value'])}" if d else "-",
                    "psi": _num(d["psi"]) if d else "-",
                    "validation": validation,
                }
            )
    return rows


def _user() -> str:
    """Who runs the CLI: the login name (never a flag or an environment variable: the requester of
    an approval may not approve it, so their name is not theirs to choose)."""
    from airflow_mlcrit.core.artifacts.records import login_name

    return login_name()


class _Cli:
    def __init__(self, args: argparse.Namespace):
        args.root = getattr(args, "root", None)
        args.json = getattr(args, "json", False)
        self.args = args
        self._store: ArtifactStore | None = None

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            import os

            self._store = open_store(
                self.args.root or root_from_env() or embedded_default_root(),
                signer=signer_from_env(),
                witness=os.environ.get("MLCRIT_WITNESS_URL") or None,
            )
        return self._store

    def emit(self, payload: Any, text: str) -> None:
        print(json.dumps(payload, indent=2, sort_keys=True) if self.args.json else text)

    def _manifest_text(self, m: Manifest) -> str:
        lines = [
            f"ref:        {m.ref}",
            f"uri:        {m.uri}",
            f"digest:     {m.digest}",
            f"created_at: {m.created_at}",
            f"size:       {_human(m.size)} in {len(m.files)} file(s)",
            "producer:   " + ", ".join(f"{k}={v}" for k, v in sorted(m.producer.items())),
            "parents:    " + (", ".join(p["ref"] for p in m.parents) or "-"),
        ]
        if m.idempotency_key:
            lines.append(f"idempotency_key: {m.idempotency_key}")
        if m.metadata:
            lines.append("metadata:   " + json.dumps(m.metadata, sort_keys=True))
        lines.append("files:")
        lines.append(
            _table(
                [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in m.files],
                ["path", "size", "sha256"],
            )
        )
        return "\n".join(lines)

    # artifacts ---------------------------------------------------------------------------
    def artifacts_put(self) -> int:
        from airflow_mlcrit.core.artifacts.refs import parse_key
        from airflow_mlcrit.core.payloads import check_payload

        a = self.args
        check_payload(parse_key(a.key)[0], a.path)  # a prompt or suite that cannot load is never committed
        m = self.store.put(
            a.key,
            a.path,
            parents=a.parent or (),
            metadata=_kv(a.meta or ()),
            idempotency_key=a.idempotency_key,
            follow_symlinks=a.follow_symlinks,
        )
        self.emit(m.to_dict() | {"uri": m.uri}, f"committed {m.ref}  {m.digest}  ({_human(m.size)})")
        return 0

    def artifacts_get(self) -> int:
        m = self.store.get(self.args.ref, self.args.dest)
        self.emit(
            m.to_dict() | {"dest": self.args.dest},
            f"{m.ref}: {len(m.files)} file(s), {_human(m.size)}, verified -> {self.args.dest}",
        )
        return 0

    def artifacts_list(self) -> int:
        target = self.args.target
        damaged: list[str] = []  # a corrupt record spoils only its own row: reported, and the exit code is 1
        if target and "/" in target:
            ref = parse_ref(target)
            aliases: dict[int, list[str]] = {}
            for alias, v in self.store.aliases(ref.key, damaged).items():
                aliases.setdefault(v, []).append(alias)
            rows = []
            for v in self.store.versions(ref.key):
                try:
                    m = self.store.resolve(ref.at(v))
                except ArtifactIntegrityError as exc:
                    damaged.append(str(exc))
                    continue
                rows.append(
                    {
                        "ref": str(m.ref),
                        "created_at": m.created_at,
                        "size": m.size,
                        "digest": m.digest,
                        "aliases": ",".join(sorted(aliases.get(v, []))),
                    }
                )
            text_rows = [r | {"size": _human(r["size"]), "digest": r["digest"][:19]} for r in rows]
            self.emit(rows, _table(text_rows, ["ref", "created_at", "size", "digest", "aliases"]))
            return self._report(damaged)
        rows = []
        for key in self.store.list_artifacts(target or None):
            versions = self.store.versions(key)
            rows.append(
                {
                    "artifact": key,
                    "versions": len(versions),
                    "latest": f"v{versions[-1]}",
                    "aliases": ",".join(f"{a}=v{v}" for a, v in sorted(self.store.aliases(key, damaged).items())),
                }
            )
        self.emit(rows, _table(rows, ["artifact", "versions", "latest", "aliases"]))
        return self._report(damaged)

    @staticmethod
    def _report(damaged: list[str]) -> int:
        for problem in damaged:
            print(f"mlcrit: integrity error: {problem}", file=sys.stderr)
        return 1 if damaged else 0

    def artifacts_show(self) -> int:
        m = self.store.resolve(self.args.ref)
        self.emit(m.to_dict() | {"uri": m.uri}, self._manifest_text(m))
        return 0

    def artifacts_verify(self) -> int:
        m = self.store.verify(self.args.ref)
        self.emit(
            {"ref": str(m.ref), "digest": m.digest, "ok": True, "files": len(m.files)},
            f"{m.ref}: OK, {len(m.files)} file(s) match {m.digest}",
        )
        return 0

    def verify(self) -> int:
        """The whole store: every committed version re-hashed, every alias history checked whole;
        one line per problem, and the rest still checked."""
        from airflow_mlcrit.exceptions import ArtifactError

        rows, versions = [], 0
        for key in self.store.list_artifacts():
            for v in self.store.versions(key):
                versions += 1
                try:
                    self.store.verify(f"{key}@v{v}")
                except ArtifactError as exc:
                    rows.append({"what": f"{key}@v{v}", "problem": str(exc)})
        aliases = self.store.verify_aliases()
        rows += [{"what": f"{k}@{a}", "problem": problem} for k, a, problem in aliases if problem]
        text = "\n".join(f"{r['what']}: {r['problem']}" for r in rows)
        summary = f"{versions} version(s) and {len(aliases)} alias history(ies) checked: " + (
            f"{len(rows)} problem(s)" if rows else "OK"
        )
        self.emit(
            {"versions": versions, "aliases": len(aliases), "problems": rows}, "\n".join(filter(None, [text, summary]))
        )
        return 1 if rows else 0

    # aliases / promote / rollback ---------------------------------------------------------
    def aliases_history(self) -> int:
        moves = self.store.alias_history(self.args.key, self.args.alias)
        rows = [m.to_dict() for m in moves]
        text_rows = [
            r
            | {
                "from": f"v{r['from_version']}" if r["from_version"] else "-",
                "to": f"v{r['to_version']}",
                "forced": "yes" if r["forced"] else "",
            }
            for r in rows
        ]
        self.emit(rows, _table(text_rows, ["seq", "at", "actor", "from", "to", "forced", "reason"]))
        return 0

    def aliases_verify(self) -> int:
        report = self.store.verify_aliases()
        rows = [{"artifact": k, "alias": a, "ok": problem is None, "problem": problem} for k, a, problem in report]
        text = "\n".join(f"{k}@{a}: " + (problem or "OK") for k, a, problem in report) or "no aliases"
        self.emit(rows, text)
        return 1 if any(problem for _, _, problem in report) else 0

    def aliases_repair(self) -> int:
        from airflow_mlcrit.core.gating.promotion import repair

        a = self.args
        move = repair(self.store, a.key, a.alias, to_version=a.to_version, reason=a.reason)
        self.emit(
            move.to_dict(),
            f"{move.kind}/{move.name}@{move.alias}: a new chain starts at entry {move.seq} -> v{move.to_version} "
            f"(the damaged entries stay for forensics: {move.extra['repair']['problem']})",
        )
        return 0

    def _policy_from_args(self) -> Any:
        from airflow_mlcrit.core.gating.policy import AliasPolicy

        a = self.args
        keys = {}
        for pair in a.approver_key or []:
            user, sep, key = pair.partition("=")
            if not sep:
                raise ConfigError(f"--approver-key expects USER=PUBLIC_KEY_HEX, got {pair!r}")
            keys[user.strip()] = key.strip()
        force_by = None if a.force_by in (None, "*") else tuple(x.strip() for x in a.force_by.split(",") if x.strip())
        return AliasPolicy(
            require_blessing=not a.no_blessing,
            approvals=a.approvals,
            approvers=tuple(x.strip() for x in (a.approvers or "").split(",") if x.strip()),
            approver_keys=keys,
            force_by=force_by,
            force_needs_approval=a.force_needs_approval,
            rollback_needs_approval=a.rollback_needs_approval,
            expires_after_hours=a.expires_after_hours,
        )

    def aliases_policy_show(self) -> int:
        from airflow_mlcrit.core.gating.policy import policy_of

        policy = policy_of(self.store, self.args.key, self.args.alias)
        doc = policy.to_dict() if policy is not None else None
        text = (
            "\n".join(f"{k}: {v}" for k, v in doc.items())
            if doc
            else f"{self.args.key}@{self.args.alias}: no policy (a blessing is required, nothing else)"
        )
        self.emit(doc, text)
        return 0

    def aliases_policy_set(self) -> int:
        from airflow_mlcrit.core.gating import set_policy

        a = self.args
        move = set_policy(
            self.store,
            a.key,
            a.alias,
            None if a.remove else self._policy_from_args(),
            reason=a.reason,
            approval=a.approval,
            create=a.create,
            attest=self._attest(),
            extra={"via": "mlcrit aliases policy set"},
        )
        self.emit(move.to_dict(), f"{move.kind}/{move.name}@{move.alias}: policy set (entry {move.seq})")
        return 0

    def aliases_policy_request(self) -> int:
        from airflow_mlcrit.core.gating.approval import request_policy_change

        a = self.args
        req = request_policy_change(
            self.store, a.key, a.alias, None if a.remove else self._policy_from_args(), requested_by=_user()
        )
        self.emit(req.to_dict(), f"{req.ref}: asks {', '.join(req.metadata['approvers'])} to approve the change")
        return 0

    def _attest(self) -> Any:
        """Confirms decisions made in Airflow through its REST API, where a URL and token are given."""
        import os

        from airflow_mlcrit.core.airflow_api import attest_decision

        url = getattr(self.args, "airflow_url", None) or os.environ.get("MLCRIT_AIRFLOW_URL")
        token = os.environ.get("MLCRIT_AIRFLOW_TOKEN")
        return attest_decision(url, token) if url and token else None

    def promote(self) -> int:
        a = self.args
        from airflow_mlcrit.core.gating import promote

        target = self.store.resolve(a.ref)
        key = f"{target.kind}/{target.name}"
        already = bool(self.store.alias_names(key)) and self.store.aliases(key).get(a.alias) == target.version
        move, proof = promote(
            self.store,
            str(target.ref),
            a.alias,
            reason=a.reason,
            force=a.force,
            approval=a.approval,
            create=a.create_alias,
            attest=self._attest(),
            extra={"via": "mlcrit promote"},
        )
        if already:
            text = (
                f"{move.kind}/{move.name}@{move.alias} is already v{move.to_version} (move {move.seq}): nothing moved"
            )
        else:
            before = f"v{move.from_version}" if move.from_version else "-"
            text = f"{move.kind}/{move.name}@{move.alias}: {before} -> v{move.to_version}"
            if move.forced:
                text += " (forced)"
            elif proof is not None and proof.metadata.get("model"):
                text += f", blessed with {proof.metadata['model']} ({proof.metadata.get('model_digest')})"
            if move.extra.get("approved_by"):
                text += f", approved by {move.extra['approved_by']}"
        self.emit(move.to_dict(), text)
        return 0

    def rollback(self) -> int:
        a = self.args
        from airflow_mlcrit.core.gating import rollback

        move = rollback(
            self.store,
            a.key,
            a.alias,
            reason=a.reason,
            to_version=a.to,
            force=a.force,
            approval=a.approval,
            attest=self._attest(),
            extra={"via": "mlcrit rollback"},
        )
        self.emit(
            move.to_dict(),
            f"{move.kind}/{move.name}@{move.alias}: rolled back v{move.from_version} -> v{move.to_version}",
        )
        return 0

    # history / diff -------------------------------------------------------------------------
    def history(self) -> int:
        from airflow_mlcrit.core.registry import history

        a = self.args
        doc = history(self.store, a.key, metric=a.metric, slice_name=a.slice, last=a.last)
        if "metrics" in doc:
            text = _table(
                _metric_rows(doc),
                ["version", "created_at", "slice", "metric", "value", "interval", "change", "gate", "aliases"],
            )
        else:
            text = _table(
                _statistics_rows(doc),
                [
                    "version",
                    "column",
                    "kind",
                    "missing",
                    "distinct",
                    "mean",
                    "median",
                    "top",
                    "drift",
                    "psi",
                    "validation",
                ],
            )
        spans = [
            f"{s['alias']}: v{s['version']} from {s['since']} to {s['until'] or 'now'}"
            + (" (forced)" if s["forced"] else "")
            for s in doc["aliases"]
        ]
        self.emit(doc, text + ("\n\nalias moves:\n" + "\n".join(spans) if spans else ""))
        return 0

    def gate_plan(self) -> int:
        from airflow_mlcrit.core.gating.plan import plan

        a = self.args
        gate = _json_arg(a.gate, "GATE")
        if (a.sizes is None) == (a.golden is None):
            raise ConfigError("give the slice sizes: --sizes NAME:N,... or --golden DATASET with --slices")
        if a.sizes is not None:
            sizes = _sizes_arg(a.sizes)
        else:
            from airflow_mlcrit.core.evaluation.evaluate import read_frame
            from airflow_mlcrit.core.evaluation.slicing import build_slices

            specs = (
                _json_arg(a.slices, "--slices")
                if (a.slices or "").lstrip().startswith("[")
                else ([c.strip() for c in (a.slices or "").split(",") if c.strip()])
            )
            frame = read_frame(a.golden, self.store if "@" in a.golden else None)
            sizes = {sl.name: len(sl.rows) for sl in build_slices(frame, specs)}
        doc = plan(
            gate,
            sizes,
            accuracy=a.accuracy,
            agreement=a.agreement,
            power=a.power,
            confidence=a.confidence,
            min_slice_size=a.min_slice_size,
        )
        rows = [
            {
                "threshold": c["threshold"],
                "slice": c["slice"],
                "n": c["n"],
                "power": f"{c['power']:.3f}",
                f"rows for {doc['power_target']:.0%}": "-" if c["rows_needed"] is None else f"{c['rows_needed']:,}",
            }
            for c in doc["checks"]
        ]
        bless = doc["bless_equivalent"]
        text = (
            f"an equivalent candidate: accuracy {doc['accuracy']:.3f} like production, agreeing on "
            f"{doc['agreement']:.3f} of rows; {doc['confidence']:.0%} intervals\n"
            + _table(rows, ["threshold", "slice", "n", "power", f"rows for {doc['power_target']:.0%}"])
            + (
                f"\nchance the gate blesses it: {bless:.4f} (the product of the {len(rows)} checks' powers)"
                if bless is not None
                else "\nno check has an exact power"
            )
            + "".join(f"\nnot planned: {u}" for u in doc["unplanned"])
        )
        self.emit(doc, text)
        return 0

    def diff(self) -> int:
        from airflow_mlcrit.core.registry import diff

        doc = diff(self.store, self.args.a, self.args.b)
        a, b = f"v{doc['a']['version']}", f"v{doc['b']['version']}"
        if doc["what"] == "metrics":
            rows = [
                {
                    "slice": r["slice"],
                    "metric": r["metric"],
                    a: _value(r["a"]),
                    b: _value(r["b"]),
                    "change": _signed(r["change"]),
                }
                for r in doc["metrics"]
            ]
            if doc["same_data"]:
                head = f"metrics of both on one golden set ({doc['evaluations'][0]}), change with its paired interval"
                for row, r in zip(rows, doc["metrics"], strict=True):
                    if r["change_interval"] and r["change_interval"][0] is not None:
                        low, high = r["change_interval"]
                        row["change"] += f" [{_signed(low)}, {_signed(high)}]"
            else:
                head = (
                    f"metrics of {doc['evaluations'][0]} and {doc['evaluations'][1]}: each on its own evaluation's "
                    "data (no evaluation judged one against the other), so a change mixes the models with the data"
                )
            text = head + "\n" + _table(rows, ["slice", "metric", a, b, "change"])
        else:
            rows = []
            for c in doc["columns"]:
                for field in ("missing", "distinct", "mean"):
                    va, vb = ((c[s] or {}).get(field) for s in "ab")
                    if va is not None or vb is not None:
                        rows.append({"column": c["column"], "figure": field, a: _num(va), b: _num(vb), "drift": ""})
                if c["drift"]:
                    d = c["drift"]
                    rows.append(
                        {
                            "column": c["column"],
                            "figure": "drift",
                            a: "",
                            b: "",
                            "drift": f"{d['measure']}={_num(d['value'])} psi={_num(d['psi'])}",
                        }
                    )
            (sa, sb), (na, nb) = doc["statistics"], doc["rows"]
            head = f"statistics {sa} ({na} rows) and {sb} ({nb} rows)"
            text = head + "\n" + _table(rows, ["column", "figure", a, b, "drift"])
        self.emit(doc, text)
        return 0

    # approvals ------------------------------------------------------------------------------
    def approvals_list(self) -> int:
        from airflow_mlcrit.core.gating.approval import pending

        rows = pending(self.store, self.args.name)
        good = [r for r in rows if "problem" not in r]
        text_rows = [
            r
            | {
                "candidate": r.get("candidate") or f"policy of {r.get('artifact')}",
                "expires_at": r["expires_at"] + (" (expired)" if r["expired"] else ""),
                "approvers": ",".join(r["approvers"]),
            }
            for r in good
        ]
        columns = ["ref", "candidate", "alias", "blessing", "requested_by", "expires_at", "approvers"]
        text = _table(text_rows, columns)
        bad = [f"{r['ref']}: MALFORMED, not listed: {r['problem']}" for r in rows if "problem" in r]
        self.emit(rows, "\n".join([text, *bad]))
        return 0

    def approvals_request(self) -> int:
        from airflow_mlcrit.core.gating.approval import request_approval

        a = self.args
        req = request_approval(self.store, a.ref, a.alias, requested_by=_user(), blessing=a.blessing, forced=a.force)
        md = req.metadata
        self.emit(
            req.to_dict(),
            f"{req.ref}: asks {', '.join(md['approvers'])} to approve {md['candidate']} for {md['alias']!r} "
            f"(expires {md['expires_at']})",
        )
        return 0

    def keys_generate(self) -> int:
        import os

        from airflow_mlcrit.core.gating.approval import generate_key

        private, public = generate_key()
        try:
            fd = os.open(self.args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
        except FileExistsError:
            raise ConfigError(f"{self.args.out} exists: a key file is never overwritten; choose another") from None
        with os.fdopen(fd, "w") as f:
            f.write(private + "\n")
        self.emit(
            {"public_key": public, "private_key_file": self.args.out},
            f"{public}\n(your private key is in {self.args.out}: keep it to yourself; give the line above to "
            "the alias policy's owners for approver_keys)",
        )
        return 0

    def keys_public(self) -> int:
        from pathlib import Path

        from airflow_mlcrit.core.gating.approval import public_key_hex

        public = public_key_hex(Path(self.args.key_file).read_bytes())
        self.emit({"public_key": public}, public)
        return 0

    def _decide(self, approve: bool) -> int:
        import os
        from pathlib import Path

        from airflow_mlcrit.core.gating.approval import decide_signed

        a = self.args
        request = self.store.resolve(a.ref)
        key_file = a.key or os.environ.get("MLCRIT_APPROVER_KEY")
        if request.kind == "approval" and request.metadata.get("run") and not key_file:
            d = self._answer_in_airflow(request, approve)
            if d is None:
                return 0
        elif key_file:
            d = decide_signed(
                self.store,
                a.ref,
                private_key=Path(key_file).read_bytes(),
                approve=approve,
                reason=a.reason,
                extra={"via": "mlcrit"},
            )
        else:
            raise ConfigError(
                f"who decides {request.ref} must be proven, not named: sign the decision with your key "
                "(--key FILE or $MLCRIT_APPROVER_KEY; mlcrit keys generate, and the alias policy lists its public "
                "half), or answer in Airflow where a task waits for it"
            )
        md = d.metadata
        what = md["candidate"] if md.get("candidate") else f"the policy of {md.get('artifact')}"
        self.emit(d.to_dict(), f"{d.ref}: {md['state']} {what} for {md['alias']!r} by {md['decided_by']}")
        return 0

    def _answer_in_airflow(self, request: Manifest, approve: bool) -> Manifest | None:
        """A task waits for this request's answer in Airflow: answer it there, through the REST API
        as the token's user (Airflow checks that they were asked), and wait for the task to
        record the decision under the same rules. Checked here first: the reason, and that the
        request is still pending and (for an approval) still holds."""
        import os
        import time

        from airflow_mlcrit.core.airflow_api import answer_hitl, task_state
        from airflow_mlcrit.core.gating.approval import check_decidable, decision_of
        from airflow_mlcrit.exceptions import AirflowApiError

        a, run = self.args, request.metadata["run"]
        url, token = a.airflow_url or os.environ.get("MLCRIT_AIRFLOW_URL"), os.environ.get("MLCRIT_AIRFLOW_TOKEN")
        where = f"task {run['task_id']} of {run['dag_id']} run {run['run_id']}"
        if not url or not token:
            raise ConfigError(
                f"{request.ref} is answered in Airflow, where {where} waits for it: answer it in the Airflow UI "
                "(required actions), or give --airflow-url (or $MLCRIT_AIRFLOW_URL) and set $MLCRIT_AIRFLOW_TOKEN to "
                "your API token (POST <airflow-url>/auth/token) to answer through Airflow's REST API"
            )
        check_decidable(self.store, request, approve=approve, reason=a.reason)
        answer = answer_hitl(url, token, run, "approve" if approve else "reject", {"reason": a.reason.strip()})
        user = (answer.get("responded_by") or {}).get("id", "?")  # PATCH's answer (GET's is responded_by_user)
        deadline = time.monotonic() + a.wait
        while (decision := decision_of(self.store, request)) is None and time.monotonic() < deadline:
            if task_state(url, token, run) in ("failed", "upstream_failed"):
                raise AirflowApiError(
                    f"Airflow took {user}'s answer, but {where} failed recording it (see its log); "
                    f"{request.ref} stays undecided"
                )
            time.sleep(1)
        if decision is None:
            print(f"{request.ref}: Airflow took {user}'s answer; {where} records the decision when it resumes")
        return decision

    def approve(self) -> int:
        return self._decide(True)

    def reject(self) -> int:
        return self._decide(False)

    # lineage / gc ---------------------------------------------------------------------------
    def lineage(self) -> int:
        from airflow_mlcrit.core.lineage_graph import lineage

        graph = lineage(self.store, self.args.ref, "downstream" if self.args.downstream else "upstream")
        fmt = "json" if self.args.json else self.args.format
        if fmt == "json":
            print(json.dumps(graph.to_dict(), indent=2, sort_keys=True))
        else:
            print(graph.to_mermaid() if fmt == "mermaid" else graph.to_text())
        return 0

    def gc(self) -> int:
        found = self.store.gc(grace_seconds=self.args.grace_hours * 3600, dry_run=not self.args.delete)
        rows = [
            {"ref": c.ref, "claimed_at": c.claimed_at, "age_h": f"{c.age_seconds / 3600:.1f}", "note": c.problem or ""}
            for c in found
        ]
        verb = "removed" if self.args.delete else "would remove (dry run; pass --delete to remove)"
        self.emit(
            {
                "removed" if self.args.delete else "would_remove": [c.ref for c in found],
                **({"flagged": flagged} if (flagged := {c.ref: c.problem for c in found if c.problem}) else {}),
            },
            f"{verb}: {len(found)} uncommitted version(s)\n"
            + (_table(rows, ["ref", "claimed_at", "age_h", "note"]) if rows else ""),
        )
        return 0


def _json_arg(value: str, what: str) -> Any:
    """A JSON document given inline or as a file's path."""
    from pathlib import Path

    text = Path(value).read_text() if not value.lstrip().startswith(("{", "[")) and Path(value).is_file() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: not JSON nor a JSON file ({exc})") from None


def _sizes_arg(value: str) -> dict[str, int]:
    """Slice sizes: a JSON object (inline or a file) or NAME:N,NAME:N (names may hold '=')."""
    if value.lstrip().startswith("{") or value.endswith(".json"):
        doc = _json_arg(value, "--sizes")
        return {str(k): int(v) for k, v in doc.items()}
    sizes = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, n = part.rpartition(":")
        if not sep or not n.strip().isdigit():
            raise ConfigError(f"--sizes: {part!r} is not NAME:N (e.g. state=NE:62)")
        sizes[name.strip()] = int(n)
    return sizes


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand must not reset --root/--json given before it to None.
    common.add_argument(
        "--root",
        default=argparse.SUPPRESS,
        help="artifact store root: a directory or s3://bucket/prefix "
        "(default: $MLCRIT_ARTIFACT_ROOT, else $AIRFLOW_HOME/mlcrit/artifacts)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of tables")

    p = argparse.ArgumentParser(
        prog="mlcrit", parents=[common], description="Versioned ML artifacts, aliases and lineage (airflow-mlcrit)."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    art = sub.add_parser("artifacts", help="put, get, list, show and verify artifact versions")
    asub = art.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = asub.add_parser("put", parents=[common], help="register a file or directory as a new version")
    put.add_argument("key", metavar="KIND/NAME")
    put.add_argument("path", metavar="PATH")
    put.add_argument("--meta", action="append", metavar="KEY=VALUE", help="user metadata (repeatable)")
    put.add_argument("--parent", action="append", metavar="REF", help="input artifact reference (repeatable)")
    put.add_argument("--idempotency-key", help="a retry with the same key returns the same version")
    put.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="store what symlinks point to: PATH itself if it is one, and links inside PATH to files inside it",
    )
    put.set_defaults(fn=_Cli.artifacts_put)
    get = asub.add_parser("get", parents=[common], help="download a version into a directory, verifying digests")
    get.add_argument("ref", metavar="REF")
    get.add_argument("dest", metavar="DEST")
    get.set_defaults(fn=_Cli.artifacts_get)
    lst = asub.add_parser("list", parents=[common], help="list artifacts, or the versions of one")
    lst.add_argument("target", nargs="?", metavar="KIND[/NAME]")
    lst.set_defaults(fn=_Cli.artifacts_list)
    show = asub.add_parser("show", parents=[common], help="print a version's manifest")
    show.add_argument("ref", metavar="REF")
    show.set_defaults(fn=_Cli.artifacts_show)
    ver = asub.add_parser("verify", parents=[common], help="re-hash every stored file (exit 1 on mismatch)")
    ver.add_argument("ref", metavar="REF")
    ver.set_defaults(fn=_Cli.artifacts_verify)

    vs = sub.add_parser(
        "verify", parents=[common], help="the whole store: re-hash every version, check every alias (exit 1 if damaged)"
    )
    vs.set_defaults(fn=_Cli.verify)

    al = sub.add_parser("aliases", help="alias audit trail")
    alsub = al.add_subparsers(dest="action", required=True, metavar="ACTION")
    hist = alsub.add_parser("history", parents=[common], help="every move of an alias: who, when, from, to, why")
    hist.add_argument("key", metavar="KIND/NAME")
    hist.add_argument("alias", metavar="ALIAS")
    hist.set_defaults(fn=_Cli.aliases_history)
    av = alsub.add_parser("verify", parents=[common], help="check every alias history's hash chain (exit 1 if damaged)")
    av.set_defaults(fn=_Cli.aliases_verify)
    rep = alsub.add_parser(
        "repair", parents=[common], help="start a new, audited chain for an alias whose history is damaged"
    )
    rep.add_argument("key", metavar="KIND/NAME")
    rep.add_argument("alias", metavar="ALIAS")
    rep.add_argument("--to-version", type=int, required=True, help="the version the alias must point at")
    rep.add_argument("--reason", required=True, help="what was found and checked (kept in the new entry)")
    rep.set_defaults(fn=_Cli.aliases_repair)
    pol = alsub.add_parser("policy", help="the rules an alias's moves obey (kept in its history)")
    polsub = pol.add_subparsers(dest="policy_action", required=True, metavar="ACTION")
    pshow = polsub.add_parser("show", parents=[common], help="print the policy in force")
    pshow.add_argument("key", metavar="KIND/NAME")
    pshow.add_argument("alias", metavar="ALIAS")
    pshow.set_defaults(fn=_Cli.aliases_policy_show)
    for verb, fn, what in (
        ("set", _Cli.aliases_policy_set, "set the policy (an audited entry, under the current policy's approvals)"),
        ("request", _Cli.aliases_policy_request, "ask the current policy's approvers to approve a new policy"),
    ):
        pp = polsub.add_parser(verb, parents=[common], help=what)
        pp.add_argument("key", metavar="KIND/NAME")
        pp.add_argument("alias", metavar="ALIAS")
        pp.add_argument("--approvals", type=int, default=0, help="approvals a move needs (default 0)")
        pp.add_argument("--approvers", help="who may approve: user names, comma-separated")
        pp.add_argument(
            "--approver-key", action="append", metavar="USER=PUBLIC_KEY", help="an approver's Ed25519 public key"
        )
        pp.add_argument("--force-by", help="who may force: user names, comma-separated; * (default): anyone")
        pp.add_argument("--force-needs-approval", action="store_true", help="a forced move needs the approvals too")
        pp.add_argument("--rollback-needs-approval", action="store_true", help="a rollback needs the approvals too")
        pp.add_argument("--no-blessing", action="store_true", help="moves need no blessing (default: they do)")
        pp.add_argument("--expires-after-hours", type=float, default=72.0, help="how long a request stays open")
        pp.add_argument("--remove", action="store_true", help="remove the policy instead")
        if verb == "set":
            pp.add_argument("--reason", required=True, help="recorded in the alias history")
            pp.add_argument("--approval", action="append", metavar="REF", help="an APPROVED policy change (repeatable)")
            pp.add_argument("--create", action="store_true", help="declare an alias that has no history yet")
            pp.add_argument("--airflow-url", help="confirm decisions made in Airflow through its REST API")
        pp.set_defaults(fn=fn)

    lin = sub.add_parser("lineage", parents=[common], help="walk the lineage graph of a version")
    lin.add_argument("ref", metavar="REF")
    direction = lin.add_mutually_exclusive_group(required=True)
    direction.add_argument("--upstream", action="store_true", help="inputs it was made from, recursively")
    direction.add_argument("--downstream", action="store_true", help="versions made from it, recursively")
    lin.add_argument("--format", choices=("text", "json", "mermaid"), default="text")
    lin.set_defaults(fn=_Cli.lineage)

    pro = sub.add_parser("promote", parents=[common], help="point an alias at a version")
    pro.add_argument("ref", metavar="REF")
    pro.add_argument("--alias", required=True)
    pro.add_argument("--reason", required=True, help="recorded in the alias history")
    pro.add_argument(
        "--force",
        action="store_true",
        help="model/adapter/prompt: promote without a BLESSED blessing (recorded as forced)",
    )
    pro.add_argument("--create-alias", action="store_true", help="the first move of an alias that does not exist yet")
    for parser in (pro,):
        parser.add_argument(
            "--approval", action="append", metavar="REF", help="an APPROVED decision the move uses (repeatable)"
        )
        parser.add_argument(
            "--airflow-url",
            help="confirm decisions made in Airflow through its REST API as the user of $MLCRIT_AIRFLOW_TOKEN "
            "(default: $MLCRIT_AIRFLOW_URL)",
        )
    pro.set_defaults(fn=_Cli.promote)

    rb = sub.add_parser("rollback", parents=[common], help="move an alias back to an earlier version")
    rb.add_argument("key", metavar="KIND/NAME")
    rb.add_argument("--alias", required=True)
    rb.add_argument("--to", type=lambda s: int(s.lstrip("v")), metavar="vN", help="target version (default: previous)")
    rb.add_argument("--reason", required=True, help="recorded in the alias history")
    rb.add_argument("--force", action="store_true", help="allow a target without a blessing (recorded as forced)")
    rb.add_argument("--approval", action="append", metavar="REF", help="an APPROVED decision the move uses")
    rb.add_argument("--airflow-url", help="confirm decisions made in Airflow through its REST API")
    rb.set_defaults(fn=_Cli.rollback)

    his = sub.add_parser(
        "history", parents=[common], help="metrics (models, adapters, prompts) or statistics (datasets) over versions"
    )
    his.add_argument("key", metavar="KIND/NAME")
    his.add_argument("--metric", help="only this metric (evaluated artifacts)")
    his.add_argument("--slice", help="only this slice, e.g. channel=phone (evaluated artifacts)")
    his.add_argument("--last", type=int, metavar="N", help="only the newest N versions")
    his.set_defaults(fn=_Cli.history)
    dif = sub.add_parser("diff", parents=[common], help="two versions side by side: statistics or metrics")
    dif.add_argument("a", metavar="KIND/NAME@vA")
    dif.add_argument("b", metavar="KIND/NAME@vB")
    dif.set_defaults(fn=_Cli.diff)

    gate = sub.add_parser("gate", help="plan a gate: its power for a candidate as good as production")
    gsub = gate.add_subparsers(dest="action", required=True, metavar="ACTION")
    gp = gsub.add_parser(
        "plan",
        parents=[common],
        help="each check's power, the rows each slice needs, and the chance the gate blesses an equivalent candidate",
    )
    gp.add_argument("gate", metavar="GATE", help="the GateConfig: JSON, inline or a file")
    gp.add_argument("--sizes", help="rows per slice: NAME:N,... (e.g. overall:4000,state=NE:62) or a JSON object")
    gp.add_argument("--golden", help="or count them in a golden set: a dataset reference or path")
    gp.add_argument("--slices", help="with --golden: the slicing specs, comma-separated columns or a JSON list")
    gp.add_argument(
        "--accuracy", type=float, required=True, help="expected accuracy of production (and of the candidate)"
    )
    gp.add_argument(
        "--agreement",
        type=float,
        help="share of rows both models get right or both wrong (default: independent errors, 1 - 2p(1 - p))",
    )
    gp.add_argument("--power", type=float, help="the power to size slices for (default: the gate's, 0.8)")
    gp.add_argument("--confidence", type=float, default=0.95, help="the evaluation's confidence (default 0.95)")
    gp.add_argument("--min-slice-size", type=int, default=30, help="the evaluation's min_slice_size (default 30)")
    gp.set_defaults(fn=_Cli.gate_plan)

    apl = sub.add_parser("approvals", help="four-eyes promotion: requests waiting for a decision")
    apsub = apl.add_subparsers(dest="action", required=True, metavar="ACTION")
    apls = apsub.add_parser("list", parents=[common], help="pending approval requests (and whether they expired)")
    apls.add_argument("name", nargs="?", metavar="NAME", help="only approval/NAME")
    apls.set_defaults(fn=_Cli.approvals_list)
    apr = apsub.add_parser("request", parents=[common], help="ask the alias policy's approvers to approve a move")
    apr.add_argument("ref", metavar="REF", help="the blessed candidate")
    apr.add_argument("--alias", required=True)
    apr.add_argument("--blessing", help="the blessing to bind (default: the candidate's newest judgement)")
    apr.add_argument(
        "--force", action="store_true", help="for a forced move of an unblessed candidate (force_needs_approval)"
    )
    apr.set_defaults(fn=_Cli.approvals_request)
    keys = sub.add_parser("keys", help="an approver's own Ed25519 key, to sign decisions made outside Airflow")
    ksub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    kgen = ksub.add_parser("generate", parents=[common], help="write a new private key; print its public half")
    kgen.add_argument("--out", required=True, help="the private key's file (created 0600, never overwritten)")
    kgen.set_defaults(fn=_Cli.keys_generate)
    kpub = ksub.add_parser("public", parents=[common], help="print the public half of a private key file")
    kpub.add_argument("key_file", metavar="FILE")
    kpub.set_defaults(fn=_Cli.keys_public)
    for verb, fn, what in (("approve", _Cli.approve, "approve"), ("reject", _Cli.reject, "reject")):
        dec = sub.add_parser(
            verb, parents=[common], help=f"{what} a pending approval request (recorded with your reason)"
        )
        dec.add_argument("ref", metavar="APPROVAL_REF", help="the request, e.g. approval/sentiment@v3")
        dec.add_argument("--reason", required=True, help="recorded with the decision and in the alias history")
        dec.add_argument(
            "--key",
            metavar="FILE",
            help="sign the decision with your own private key (default: $MLCRIT_APPROVER_KEY); the alias policy "
            "lists its public half, which names you. Without it, a request an Airflow task waits on is answered "
            "through Airflow's REST API",
        )
        dec.add_argument(
            "--airflow-url",
            help="for a request an Airflow task waits on: the api-server to answer through, as the user of "
            "$MLCRIT_AIRFLOW_TOKEN (default: $MLCRIT_AIRFLOW_URL)",
        )
        dec.add_argument(
            "--wait",
            type=float,
            default=120.0,
            help="seconds to wait for the task to record the decision (default 120)",
        )
        dec.set_defaults(fn=fn)

    gc = sub.add_parser("gc", parents=[common], help="remove versions that were never committed (dry run by default)")
    gc.add_argument(
        "--grace-hours", type=float, default=24.0, help="only versions claimed longer ago than this (default 24)"
    )
    gc.add_argument("--delete", action="store_true", help="really delete (default: only list)")
    gc.set_defaults(fn=_Cli.gc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(_Cli(args))
    except ArtifactIntegrityError as exc:
        print(f"mlcrit: integrity error: {exc}", file=sys.stderr)
        return 1
    except MlcritError as exc:
        print(f"mlcrit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
