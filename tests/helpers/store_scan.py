"""Temporary paths that leaked into stored files: a stored file must name what a run used by its
pinned reference, never the scratch directory it was fetched into (which is gone after the run,
and differs from run to run, so it also breaks reproducible digests)."""

from __future__ import annotations

import re
from pathlib import Path

# tempfile's names: mkdtemp() gives tmp + 8 characters, our prefixes mlcrit-<what>- + 8
TEMPORARY = re.compile(r"/(?:tmp[a-z0-9_]{8}|mlcrit-[a-z-]+-[a-z0-9_]{8})(?=/|\b)")
TEXT = {".json", ".jsonl", ".md", ".txt", ".html", ".yaml", ".yml", ".cfg"}


def temporary_paths(store_root: Path) -> dict[str, list[str]]:
    """{stored file: the temporary paths it mentions} over every text file of the store."""
    found = {}
    for path in Path(store_root).rglob("*"):
        if path.is_file() and path.suffix in TEXT and path.stat().st_size < 50_000_000:
            hits = sorted(set(TEMPORARY.findall(path.read_text(errors="replace"))))
            if hits:
                found[str(path.relative_to(store_root))] = hits
    return found
