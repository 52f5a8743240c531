"""Lineage graphs laid out by Graphviz (``dot``), the standard graph layout engine, as SVG drawn
on the server: no script in the page, nothing fetched at run time."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from airflow_mlcrit.exceptions import MissingDependencyError

_KIND_COLOURS = {
    "dataset": "#e8f1fb",
    "transformed_dataset": "#e8f1fb",
    "quarantine": "#fdecea",
    "statistics": "#f3f0fa",
    "validation_report": "#f3f0fa",
    "model": "#e6f4ea",
    "adapter": "#e6f4ea",
    "base_model": "#e6f4ea",
    "prompt": "#e6f4ea",
    "evaluation": "#fef7e0",
    "blessing": "#fef7e0",
}


def _quote(text: str) -> str:
    """A DOT string literal. A backslash is kept only before ``n`` (DOT's line break in labels);
    references cannot hold one (their names are checked), other fields lose it."""
    text = text.replace("\n", " ").replace('"', "'")
    return '"' + re.sub(r"\\(?!n)", "", text) + '"'


def to_dot(root: str, nodes: dict[str, Any], edges: list[tuple[str, str]], link: Callable[[str], str]) -> str:
    lines = [
        "digraph lineage {",
        '  rankdir=LR; bgcolor="transparent"; nodesep=0.25; ranksep=0.45;',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, color="#9aa3b2"];',
        '  edge [color="#9aa3b2", arrowsize=0.6];',
    ]
    for ref, m in sorted(nodes.items()):
        kind = ref.split("/", 1)[0]
        attrs = {
            "label": f"{ref}\\n{m.digest[:19]}",
            "URL": link(ref),
            "target": "_self",
            "tooltip": f"{ref} ({m.created_at})",
            "fillcolor": _KIND_COLOURS.get(kind, "#f1f3f4"),
            "id": "n_" + re.sub(r"[^A-Za-z0-9_]", "_", ref),
        }
        if ref == root:
            attrs |= {"penwidth": "2", "color": "#0b5cad"}
        lines.append(f"  {_quote(ref)} [" + ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items()) + "];")
    for parent, child in edges:
        lines.append(f"  {_quote(parent)} -> {_quote(child)};")
    lines.append("}")
    return "\n".join(lines)


def render_svg(root: str, nodes: dict[str, Any], edges: list[tuple[str, str]], link: Callable[[str], str]) -> str:
    """The graph as an inline ``<svg>`` element; MissingDependencyError if Graphviz is absent."""
    dot = shutil.which("dot")
    if dot is None:
        raise MissingDependencyError(
            "drawing lineage graphs needs Graphviz's `dot` on the api-server host (Debian/Ubuntu: apt-get install "
            "graphviz); `mlcrit lineage REF --upstream` prints the same graph as text"
        )
    out = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(root, nodes, edges, link), capture_output=True, text=True, timeout=30, check=True
    )
    svg = out.stdout
    return svg[svg.index("<svg") :]  # without the XML prolog and doctype: inlined in the page
