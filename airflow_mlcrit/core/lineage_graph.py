"""Walks manifest parents (upstream) or the store's child index (downstream) into a graph."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_mlcrit.core.artifacts import ArtifactStore, Manifest


@dataclass
class LineageGraph:
    root: str
    direction: str
    nodes: dict[str, Manifest] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (parent ref, child ref)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "direction": self.direction,
            "nodes": [
                {"ref": r, "digest": m.digest, "created_at": m.created_at, "producer": m.producer}
                for r, m in self.nodes.items()
            ],
            "edges": [{"parent": p, "child": c} for p, c in self.edges],
        }

    def to_mermaid(self) -> str:
        ids = {ref: f"n{i}" for i, ref in enumerate(self.nodes)}
        lines = ["graph LR"]
        lines += [f'  {ids[r]}["{r}"]' for r in self.nodes]
        lines += [f"  {ids[p]} --> {ids[c]}" for p, c in self.edges]
        return "\n".join(lines)

    def to_text(self) -> str:
        children: dict[str, list[str]] = {}
        for p, c in self.edges:
            a, b = (c, p) if self.direction == "upstream" else (p, c)
            children.setdefault(a, []).append(b)
        out: list[str] = []

        def walk(ref: str, depth: int, seen: frozenset[str]) -> None:
            m = self.nodes[ref]
            out.append(
                f"{'  ' * depth}{'<- ' if depth and self.direction == 'upstream' else '-> ' if depth else ''}"
                f"{ref}  {m.digest[:19]}  {m.created_at}"
            )
            for nxt in sorted(children.get(ref, [])):
                if nxt not in seen:
                    walk(nxt, depth + 1, seen | {nxt})

        walk(self.root, 0, frozenset({self.root}))
        return "\n".join(out)


def lineage(store: ArtifactStore, ref: str, direction: str, max_depth: int = 50) -> LineageGraph:
    """Breadth-first walk from ``ref``; ``direction`` is 'upstream' or 'downstream'."""
    if direction not in ("upstream", "downstream"):
        raise ValueError(f"direction must be 'upstream' or 'downstream', got {direction!r}")
    start = store.resolve(ref)
    graph = LineageGraph(root=str(start.ref), direction=direction, nodes={str(start.ref): start})
    frontier = [start]
    for _ in range(max_depth):
        nxt = []
        for m in frontier:
            related = store.parents(m.ref) if direction == "upstream" else store.children(m.ref)
            for r in related:
                key = str(r.ref)
                graph.edges.append((key, str(m.ref)) if direction == "upstream" else (str(m.ref), key))
                if key not in graph.nodes:
                    graph.nodes[key] = r
                    nxt.append(r)
        if not nxt:
            break
        frontier = nxt
    return graph
