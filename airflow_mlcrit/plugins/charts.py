"""Server-side SVG charts for the registry pages: no JavaScript, nothing fetched at run time
(air-gapped sites), and the same picture in any browser or in a screenshot."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 360, 170, 34


def trajectory(points: list[dict[str, Any]], *, title: str, label: str = "", zero: bool = False) -> str:
    """One metric on one slice across versions: the value as a line, its interval as a band,
    versions that were ever in production ringed, and versions the gate stopped on this slice
    crossed. ``points``: ``{version, value, low, high, production, stopped}`` (and optionally the
    ``label`` its tooltip starts with), in version order; a point without a value (not evaluated,
    or undefined on the slice) leaves a gap. ``zero``: the axis includes 0, drawn as a dashed line
    (for differences: above it, the candidate did better)."""
    known = [p for p in points if p.get("value") is not None]
    lows = [p["low"] if p.get("low") is not None else p["value"] for p in known] + ([0.0] if zero else [])
    highs = [p["high"] if p.get("high") is not None else p["value"] for p in known] + ([0.0] if zero else [])
    lo, hi = (min(lows), max(highs)) if known else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    shown = lo, hi  # the axis labels: the data's range, not the margin around it
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    n = max(len(points), 2)

    def x(i: int) -> float:
        return PAD + i * (WIDTH - 2 * PAD) / (n - 1)

    def y(v: float) -> float:
        return HEIGHT - PAD + (v - lo) / (hi - lo) * (2 * PAD - HEIGHT)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{PAD}" y="16" class="t">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="4" y="{y(shown[1]) + 4:.1f}" class="l">{shown[1]:.3g}</text>',
        f'<text x="4" y="{y(shown[0]) + 4:.1f}" class="l">{shown[0]:.3g}</text>',
    ]
    if zero:
        parts.append(f'<line x1="{PAD}" y1="{y(0.0):.1f}" x2="{WIDTH - PAD}" y2="{y(0.0):.1f}" class="zero"/>')
    every = max(1, -(-len(points) // 12))  # at most 12 labels: 30 versions' labels would overprint
    for i, p in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 14}" class="l" text-anchor="middle">v{p["version"]}</text>'
            )
    # runs of consecutive known points: a band and a line each
    runs: list[list[int]] = [[]]
    for i, p in enumerate(points):
        if p.get("value") is None:
            runs.append([])
        else:
            runs[-1].append(i)
    for run in (r for r in runs if r):
        with_band = [i for i in run if points[i].get("low") is not None]
        if len(with_band) == len(run):
            upper = " ".join(f"{x(i):.1f},{y(points[i]['high']):.1f}" for i in run)
            lower = " ".join(f"{x(i):.1f},{y(points[i]['low']):.1f}" for i in reversed(run))
            if len(run) == 1:
                i = run[0]
                parts.append(
                    f'<line x1="{x(i):.1f}" y1="{y(points[i]["low"]):.1f}" x2="{x(i):.1f}" '
                    f'y2="{y(points[i]["high"]):.1f}" class="band-line"/>'
                )
            else:
                parts.append(f'<polygon points="{upper} {lower}" class="band"/>')
        line = " ".join(f"{x(i):.1f},{y(points[i]['value']):.1f}" for i in run)
        parts.append(f'<polyline points="{line}" class="line"/>')
    for i, p in enumerate(points):
        if p.get("value") is None:
            continue
        cx, cy = x(i), y(p["value"])
        tip = f"{p.get('label') or 'v' + str(p['version'])}: {p['value']:.4f}"
        if p.get("low") is not None:
            tip += f" [{p['low']:.4f}, {p['high']:.4f}]"
        if p.get("production"):
            tip += ", was production"
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" class="prod"/>')
        if p.get("stopped"):
            tip += ", stopped by the gate on this slice"
            parts.append(
                f'<path d="M{cx - 6:.1f},{cy - 6:.1f} L{cx + 6:.1f},{cy + 6:.1f} M{cx - 6:.1f},{cy + 6:.1f} '
                f'L{cx + 6:.1f},{cy - 6:.1f}" class="stop"/>'
            )
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" class="pt"><title>{escape(tip)}</title></circle>')
    if label:
        parts.append(f'<text x="{WIDTH - PAD}" y="29" class="l" text-anchor="end">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
