"""The layering rules of the README's Architecture section, enforced: core never imports airflow;
operators and DAG parsing import nothing heavy; no module imports another's private names."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "peft", "apache_beam", "great_expectations"]


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_core_imports_with_airflow_unimportable():
    out = _run(
        """
        import importlib, pkgutil, sys

        class BlockAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError(f"airflow is blocked in this test: {name}")

        sys.meta_path.insert(0, BlockAirflow())
        import airflow_mlcrit.core, airflow_mlcrit.exceptions
        names = []
        for m in pkgutil.walk_packages(airflow_mlcrit.core.__path__, "airflow_mlcrit.core."):
            importlib.import_module(m.name)
            names.append(m.name)
        assert not [n for n in sys.modules if n == "airflow" or n.startswith("airflow.")]
        print(len(names))
        """
    )
    assert int(out) >= 8


def test_operator_modules_and_dag_parsing_import_nothing_heavy():
    out = _run(
        f"""
        import importlib, json, pkgutil, sys
        import airflow_mlcrit
        import airflow_mlcrit.plugins.registry  # as every Airflow component loads the plugin
        plugin_only = sorted(n for n in ("fastapi", "airflow_mlcrit.plugins.app") if n in sys.modules)
        modules = []
        for sub in ("operators", "sensors", "hooks", "triggers", "plugins"):
            pkg = importlib.import_module("airflow_mlcrit." + sub)
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                importlib.import_module(m.name)
                modules.append(m.name)
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:  # Airflow < 3.2
            from airflow.models.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / "dags")!r})
        print(json.dumps({{"modules": modules, "dags": sorted(bag.dag_ids), "errors": bag.import_errors,
                          "plugin_only": plugin_only,
                          "heavy": [h for h in {HEAVY!r} if h in sys.modules]}}))
        """
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert "airflow_mlcrit.operators.artifacts" in result["modules"]
    assert "airflow_mlcrit.hooks.artifacts" in result["modules"]
    assert "airflow_mlcrit.plugins.app" in result["modules"]
    assert result["plugin_only"] == []  # the plugin's app is built where it is served, not on import
    assert result["errors"] == {}
    assert "mlcrit_register_dataset" in result["dags"]
    assert result["heavy"] == []


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every `from module import name` in a file, at any depth."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return found


def test_no_private_name_is_imported_from_another_module():
    """One owner per concept: what another module needs is public there, never `_name`."""
    offenders = [
        f"{p.relative_to(REPO)}:{line}: from {module} import {name}"
        for p in sorted((REPO / "airflow_mlcrit").rglob("*.py"))
        for line, module, name in _imports(p)
        if module != "__future__" and name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


def test_the_gating_modules_import_one_another_without_a_circle():
    """blessing <- policy <- approval <- promotion, and decide on its own: each module's imports
    (also those inside functions) of the others point one way."""
    gating = REPO / "airflow_mlcrit" / "core" / "gating"
    prefix = "airflow_mlcrit.core.gating."
    graph = {
        p.stem: {m.removeprefix(prefix) for _, m, _ in _imports(p) if m.startswith(prefix)}
        for p in gating.glob("*.py")
        if p.stem != "__init__"
    }
    assert graph["blessing"] == set()

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m))
    assert circles == [], {m: sorted(graph[m]) for m in circles}
