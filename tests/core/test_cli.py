"""`mlcrit` end to end, in-process through main() and once through the installed console script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlcrit.core.artifacts import open_store
from airflow_mlcrit.core.cli import main


@pytest.fixture
def cli(store_spec, monkeypatch, capsys):
    root, options = store_spec
    monkeypatch.setenv("MLCRIT_ARTIFACT_ROOT", root)
    if "endpoint_url" in options:
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])

    def run(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.store = open_store(root, **options)
    return run


@pytest.fixture
def files(tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text("text,label\nhi,1\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.safetensors").write_bytes(b"\x00" * 64)
    return raw, model


def test_put_list_show_get_verify(cli, files, tmp_path):
    raw, model = files
    code, out, _ = cli("artifacts", "put", "dataset/raw", str(raw), "--meta", "rows=1", "--meta", "source=crm")
    assert code == 0 and out.startswith("committed dataset/raw@v1  sha256:")
    code, out, _ = cli("--json", "artifacts", "put", "model/clf", str(model), "--parent", "dataset/raw")
    assert code == 0
    put = json.loads(out)
    assert (put["ref"], put["parents"][0]["ref"]) == ("model/clf@v1", "dataset/raw@v1")
    assert cli.store.resolve("dataset/raw@v1").metadata == {"rows": 1, "source": "crm"}

    code, out, _ = cli("artifacts", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["ARTIFACT", "VERSIONS", "LATEST", "ALIASES"]
    assert [line.split() for line in lines[2:]] == [["dataset/raw", "1", "v1"], ["model/clf", "1", "v1"]]
    code, out, _ = cli("--json", "artifacts", "list", "model/clf")
    assert [(r["ref"], r["size"]) for r in json.loads(out)] == [("model/clf@v1", 64)]

    code, out, _ = cli("artifacts", "show", "model/clf@v1")
    assert "parents:    dataset/raw@v1" in out and "weights.safetensors  64" in out

    dest = tmp_path / "dest"
    code, out, _ = cli("artifacts", "get", "model/clf@latest", str(dest))
    assert code == 0 and (dest / "weights.safetensors").read_bytes() == b"\x00" * 64
    code, out, _ = cli("artifacts", "verify", "model/clf@v1")
    assert code == 0 and out.startswith("model/clf@v1: OK, 1 file(s) match sha256:")


def test_verify_fails_on_flipped_byte(cli, files):
    raw, _ = files
    cli("artifacts", "put", "dataset/raw", str(raw))
    key = "dataset/raw/v000001/raw.csv"
    data = bytearray(cli.store.backend.read_bytes(key))
    data[0] ^= 1
    cli.store.backend.write_bytes(key, bytes(data))
    code, out, err = cli("artifacts", "verify", "dataset/raw@v1")
    assert code == 1 and out == ""
    assert err.startswith(
        "mlcrit: integrity error: file 'raw.csv' of dataset/raw@v1 does not match its manifest digest"
    )
    assert len(err.strip().splitlines()) == 1
    # the whole store: the damaged version is named on its own line, the rest is still checked
    cli("artifacts", "put", "dataset/raw", str(raw))
    code, out, _ = cli("verify")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("dataset/raw@v1: file 'raw.csv' of dataset/raw@v1 does not match its manifest digest")
    assert lines[-1] == "2 version(s) and 0 alias history(ies) checked: 1 problem(s)"


def test_promote_rollback_history(cli, files):
    _, model = files
    for _ in range(2):
        cli("artifacts", "put", "dataset/clf", str(model))
    cli("artifacts", "put", "model/clf", str(model))
    code, _, err = cli("promote", "model/clf@v1", "--alias", "production", "--reason", "first")
    assert code == 1 and "unknown alias 'production' of model/clf; known: none yet" in err  # never made by a typo
    code, _, err = cli("promote", "model/clf@v1", "--alias", "production", "--create-alias", "--reason", "first")
    assert code == 1 and "no BLESSED blessing exists for model/clf@v1" in err  # models need a blessing
    assert cli("promote", "dataset/clf@v1", "--alias", "production", "--create-alias", "--reason", "first")[1] == (
        "dataset/clf@production: - -> v1\n"
    )
    assert cli("promote", "dataset/clf@v2", "--alias", "production", "--reason", "better", "--force")[0] == 0
    code, out, _ = cli("rollback", "dataset/clf", "--alias", "production", "--reason", "regressed on NE")
    assert out == "dataset/clf@production: rolled back v2 -> v1\n"
    code, out, _ = cli("--json", "aliases", "history", "dataset/clf", "production")
    rows = json.loads(out)
    assert [(r["from_version"], r["to_version"], r["reason"], r["forced"]) for r in rows] == [
        (None, 1, "first", False),
        (1, 2, "better", True),
        (2, 1, "regressed on NE", False),
    ]
    code, out, _ = cli("aliases", "history", "dataset/clf", "production")
    assert out.splitlines()[0].split() == ["SEQ", "AT", "ACTOR", "FROM", "TO", "FORCED", "REASON"]
    code, out, err = cli("rollback", "dataset/clf", "--alias", "production", "--to", "v7", "--reason", "x")
    assert code == 1 and "dataset/clf@v7 does not exist" in err


def test_lineage_formats(cli, files):
    raw, model = files
    cli("artifacts", "put", "dataset/raw", str(raw))
    cli("artifacts", "put", "statistics/raw", str(raw), "--parent", "dataset/raw@v1")
    cli("artifacts", "put", "model/clf", str(model), "--parent", "dataset/raw@v1", "--parent", "statistics/raw@v1")
    code, out, _ = cli("lineage", "model/clf", "--upstream", "--format", "json")
    graph = json.loads(out)
    assert sorted((e["parent"], e["child"]) for e in graph["edges"]) == [
        ("dataset/raw@v1", "model/clf@v1"),
        ("dataset/raw@v1", "statistics/raw@v1"),
        ("statistics/raw@v1", "model/clf@v1"),
    ]
    code, out, _ = cli("lineage", "dataset/raw@v1", "--downstream", "--format", "mermaid")
    assert code == 0
    assert out.splitlines()[0] == "graph LR" and '["model/clf@v1"]' in out and '["statistics/raw@v1"]' in out
    code, out, _ = cli("lineage", "dataset/raw@v1", "--downstream")
    assert out.splitlines()[0].startswith("dataset/raw@v1  sha256:")
    assert sorted(line.split()[1] for line in out.splitlines()[1:3]) == ["model/clf@v1", "statistics/raw@v1"]


def test_gc_dry_run_then_delete(cli, files, monkeypatch):
    raw, _ = files
    real = cli.store.backend.create_exclusive
    monkeypatch.setattr(
        cli.store.backend,
        "create_exclusive",
        lambda k, d: (_ for _ in ()).throw(KeyboardInterrupt()) if k.endswith("_MANIFEST.json") else real(k, d),
    )
    with pytest.raises(KeyboardInterrupt):
        cli.store.put("dataset/raw", raw)
    code, out, _ = cli("--json", "gc", "--grace-hours", "0")
    assert code == 0
    assert json.loads(out) == {"would_remove": ["dataset/raw@v1"]}
    code, out, _ = cli("gc", "--grace-hours", "0", "--delete")
    assert out.startswith("removed: 1 uncommitted version(s)")
    assert cli.store.backend.list_keys("dataset/raw") == ["dataset/raw/v000001/_MANIFEST.json"]  # gc's tombstone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("artifacts", "show", "dataset/../x@v1"), "mlcrit: error: invalid artifact reference 'dataset/../x@v1'"),
        (("artifacts", "show", "dataset/none"), "mlcrit: error: dataset/none has no committed version"),
        (
            ("artifacts", "put", "dataset/x", "/nonexistent/file"),
            "mlcrit: error: no such file or directory: /nonexistent/file",
        ),
        (
            ("artifacts", "put", "dataset/x", "/etc/hostname", "--meta", "novalue"),
            "mlcrit: error: --meta expects KEY=VALUE, got 'novalue'",
        ),
    ],
)
def test_errors_are_one_line_with_exit_1(cli, args, message):
    code, out, err = cli(*args)
    assert code == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_console_script_is_installed(tmp_path, files):
    raw, _ = files
    exe = Path(sys.executable).with_name("mlcrit")
    result = subprocess.run(
        [str(exe), "--root", str(tmp_path / "s"), "artifacts", "put", "dataset/raw", str(raw)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("committed dataset/raw@v1")
    result = subprocess.run(
        [str(exe), "--root", str(tmp_path / "s"), "artifacts", "verify", "dataset/raw@v1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0


def test_a_prompt_or_suite_that_cannot_load_is_refused_at_registration(tmp_path):
    """One line on stderr, exit 2, and no version: checked before anything is committed."""
    import subprocess
    import sys

    from airflow_mlcrit.core.artifacts import open_store

    root = tmp_path / "store"
    mlcrit = [sys.executable, "-m", "airflow_mlcrit.core.cli", "--root", str(root)]

    def put(key, path):
        return subprocess.run([*mlcrit, "artifacts", "put", key, str(path)], capture_output=True, text=True)

    (tmp_path / "bad.json").write_text("{}")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "prompt.json").write_text("{}")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "prompt.json").write_text('{"template": "{{ text }} {{ x }}", "variables": ["text"]}')
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "suite.json").write_text('{"name": "edge", "tests": [{"name": "t", "type": "XYZ"}]}')
    cases = [
        ("prompt/x", tmp_path / "bad.json", "a prompt artifact holds prompt.json; "),
        ("prompt/x", tmp_path / "p", "PromptSpec needs field(s) ['template']; got none"),
        (
            "prompt/x",
            tmp_path / "q",
            "PromptSpec.template uses ['x'] but declares only ['text']; add them to variables",
        ),
        ("suite/x", tmp_path / "s", "suite 'edge' tests[0]: needs a 'name' and 'type' MFT, INV or DIR"),
    ]
    for key, path, expected in cases:
        done = put(key, path)
        assert done.returncode != 0, done.stdout
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("mlcrit: error: ") and expected in line, line
    assert open_store(root).list_artifacts() == []
    good = tmp_path / "good"
    good.mkdir()
    (good / "prompt.json").write_text('{"template": "Review: {{ text }}", "variables": ["text"]}')
    assert put("prompt/x", good).returncode == 0 and open_store(root).versions("prompt/x") == [1]


def test_meta_values_that_are_not_json_numbers_stay_text(tmp_path):
    from airflow_mlcrit.core.cli import _kv

    assert _kv(["a=NaN", "b=Infinity", "c=[1, -Infinity]", "d=1.5", "e=true", "f=x"]) == {
        "a": "NaN",
        "b": "Infinity",
        "c": [1, "-Infinity"],
        "d": 1.5,
        "e": True,
        "f": "x",
    }
