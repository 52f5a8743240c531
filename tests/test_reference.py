"""docs/reference.md is generated from the code and documents every parameter."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_reference_is_current_and_complete():
    check = subprocess.run(
        [sys.executable, "dev/gen-reference.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, "docs/reference.md is stale: run .venv/bin/python dev/gen-reference.py"
    rows = [line for line in (REPO / "docs" / "reference.md").read_text().splitlines() if line.startswith("| `")]
    undocumented = [row.split("|")[1].strip() for row in rows if row.rstrip().endswith("|  |")]
    assert len(rows) > 80 and undocumented == []
