"""A self-contained HTML report of an evaluation: no scripts, no external assets."""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}th{background:#f4f6fa}.bad{color:#b00020}
.ok{color:#137333}.muted{color:#777}.undecided{color:#b06000}svg{vertical-align:middle}
.verdict{font-size:1.3em;font-weight:600}"""


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else escape(str(v))


def _ci(m: dict[str, Any] | None) -> str:
    if not m:
        return "—"
    return f"{_fmt(m['value'])} <span class=muted>[{_fmt(m['low'])}, {_fmt(m['high'])}]</span>"


def _bar(cand: dict | None, base: dict | None, lo: float, hi: float) -> str:
    """Candidate (blue) and baseline (grey) values as bars with CI whiskers on a shared scale."""
    width, span = 220, (hi - lo) or 1.0
    x = lambda v: 4 + (width - 8) * (min(max(v, lo), hi) - lo) / span  # noqa: E731
    parts = []
    for row, (m, color) in enumerate(((cand, "#1a73e8"), (base, "#9aa0a6"))):
        if not m or m["value"] is None:
            continue
        y = 4 + row * 12
        parts.append(f'<rect x="4" y="{y}" width="{x(m["value"]) - 4:.1f}" height="8" fill="{color}"/>')
        if m["low"] is not None and m["high"] is not None:
            a, b = x(m["low"]), x(m["high"])
            parts.append(
                f'<path d="M{a:.1f} {y + 4}H{b:.1f}M{a:.1f} {y}V{y + 8}M{b:.1f} {y}V{y + 8}" stroke="#202124"/>'
            )
    return f'<svg width="{width}" height="28" role="img">{"".join(parts)}</svg>'


def _limits(gate: dict[str, Any] | None, metric: str) -> dict[str, float]:
    """{slice name: the limit its difference interval must clear} from the gate's change checks."""
    if not gate:
        return {}
    return {
        c["slice"]: c["limit"]
        for c in gate["checks"]
        if c["kind"] == "change" and c.get("metric") == metric and c.get("limit") is not None
    }


def _verdict(d: dict | None, limit: float | None, lower_better: bool) -> str:
    """pass / fail / undecided: the difference interval against the threshold, not its sign."""
    if not d or d.get("low") is None or limit is None:
        return ""
    if lower_better:
        return "ok" if d["high"] < limit else "bad" if d["low"] >= limit else "undecided"
    return "ok" if d["low"] > limit else "bad" if d["high"] <= limit else "undecided"


def _gate_section(gate: dict[str, Any]) -> str:
    verdict = "ok" if gate["decision"] == "BLESSED" else "bad"
    rows = [
        [
            f"<span class={'ok' if c['status'] == 'passed' else 'bad' if c['status'] == 'failed' else 'undecided'}>"
            f"{escape(c['status'].upper())}</span>",
            escape(c["message"]),
        ]
        for c in gate["checks"]
    ]
    return f"<h2>Gate decision</h2><p class='verdict {verdict}'>{escape(gate['decision'])}</p>" + _table(
        ["verdict", "threshold"], rows
    )


def render_html(result: dict[str, Any], *, title: str, gate: dict[str, Any] | None = None) -> str:
    """The evaluation, worst slice first; with ``gate`` (a blessing's decision and checks), the
    decision and every threshold's verdict on top, and each difference coloured by its interval
    against its threshold: pass (green), fail (red), undecided (amber)."""
    metric = result["metrics"][0]
    lower_better = metric in result.get("lower_is_better", [])
    slices = result["slices"]
    limits = _limits(gate, metric)
    flagged = {
        c["slice"]
        for c in (gate or {}).get("checks", [])
        if c.get("underpowered") or (c["status"] == "skipped" and c.get("slice"))
    }

    def badness(s: dict[str, Any]) -> float:
        d = (s.get("difference") or {}).get(metric) or {}
        if d.get("low") is not None:  # worst case of the change first
            return -d["high"] if lower_better else d["low"]
        v = (s["candidate"] or {}).get(metric, {}).get("value")
        return float("inf") if v is None else (-v if lower_better else v)

    values = [
        v
        for s in slices
        for role in ("candidate", "baseline")
        for k in ("low", "high", "value")
        if s.get(role) and (v := s[role][metric].get(k)) is not None
    ]
    lo, hi = (min([*values, 0.0]), max([*values, 1.0])) if values else (0.0, 1.0)
    rows, aside = [], []
    for s in sorted(slices, key=badness):
        d = (s.get("difference") or {}).get(metric)
        cls = _verdict(d, limits.get(s["name"]), lower_better)
        cand, base = s["candidate"][metric], (s.get("baseline") or {}).get(metric)
        row = [escape(s["name"]), str(s["n"]), _ci(cand), _ci(base), f"<span class='{cls}'>{_ci(d)}</span>"]
        (rows if s["gated"] and s["name"] not in flagged else aside).append([*row, _bar(cand, base, lo, hi)])
    overall = slices[0]
    other_rows = [
        [
            escape(m),
            _ci(overall["candidate"][m]),
            _ci((overall.get("baseline") or {}).get(m)),
            _ci((overall.get("difference") or {}).get(m)),
        ]
        for m in result["metrics"][1:]
    ]
    suite_rows = [
        [role, escape(s["name"]), escape(t["name"]), t["type"], f"{t['passed']}/{t['cases']}", f"{t['pass_rate']:.3f}"]
        for role, suites in (result.get("suites") or {}).items()
        for s in suites
        for t in s["tests"]
    ]
    sens_rows = [
        [
            escape(p["perturbation"]),
            escape(r["slice"]),
            r["n"],
            r["changed"],
            f"{r['flip_rate']:.3f}",
            f"{r['metric_delta']:+.3f}",
        ]
        for p in result.get("sensitivity") or []
        for r in p["slices"]
    ]
    conf = int(result["confidence"] * 100)
    methods = result.get("interval_methods", {}).get(metric, {})
    head = f'<meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style>'
    judged = _gate_section(gate) if gate else "<p class=muted>Not judged by a gate yet.</p>"
    return (
        f"<!doctype html><html><head>{head}</head><body><h1>{escape(title)}</h1>"
        + judged
        + f"<p>{result['rows']} rows, {conf}% intervals: {escape(methods.get('model', ''))} for one model, "
        f"{escape(methods.get('difference', ''))} for the paired difference. Blue: candidate; grey: baseline. "
        "Slices are sorted worst first, by the conservative end of the difference interval (its lower bound; "
        "the upper one where lower is better), or by the candidate's value when there is no baseline.</p>"
        f"<h2>{escape(metric)} by gated slice, worst first</h2>"
        + _table(["slice", "n", "candidate", "baseline", "difference", ""], rows)
        + f"<h2>Not gated: below min_slice_size ({result['min_slice_size']}), underpowered or skipped</h2>"
        + _table(["slice", "n", "candidate", "baseline", "difference", ""], aside)
        + "<h2>Other metrics, overall</h2>"
        + _table(["metric", "candidate", "baseline", "difference"], other_rows)
        + _degenerate_section(result)
        + "<h2>Behavioural suites</h2>"
        + _table(["model", "suite", "test", "type", "passed", "rate"], suite_rows)
        + "<h2>Sensitivity</h2>"
        + _table(["perturbation", "slice", "n", "changed", "flip rate", "metric delta"], sens_rows)
        + "</body></html>\n"
    )


def _degenerate_section(result: dict[str, Any]) -> str:
    """What a useless model looks like: no better than the majority answer, classes it never
    predicts, unparsed outputs, inputs cut at max_length."""
    parts = []
    if "majority" in result:
        m = result["majority"]
        d = result["slices"][0].get("majority", {}).get("difference") or {}
        parts.append(
            f"<p>Always answering the majority class {escape(m['label'])!s} scores {m['share']:.4f}; candidate minus "
            f"that: {_ci(d) if d else '—'}.</p>"
        )
    rates = result.get("prediction_rates") or {}
    if rates:
        labels = list(next(iter(rates.values())))
        rows = [
            [escape(role), *(f"<span class={'bad' if r[k] == 0 else ''}>{r[k]:.4f}</span>" for k in labels)]
            for role, r in rates.items()
        ]
        parts.append(_table(["model", *(escape(k) for k in labels)], rows))
    cut = [
        [escape(s["name"]), s["n"], *(f"{s['truncated'].get(role, 0):.4f}" for role in ("candidate", "baseline"))]
        for s in result["slices"]
        if s.get("truncated") and any(s["truncated"].values())
    ]
    if cut:
        parts.append("<p>Share of inputs cut at max_length:</p>" + _table(["slice", "n", "candidate", "baseline"], cut))
    return "<h2>Majority class, prediction rates, truncation</h2>" + ("".join(parts) or "<p class=muted>none</p>")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class=muted>none</p>"
    th = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"
