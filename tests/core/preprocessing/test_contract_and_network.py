"""The transform contract catches any change in preparation; the default runner never reaches out."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlcrit.core.preprocessing.config import PreprocessConfig
from airflow_mlcrit.core.preprocessing.contract import ContractMismatchError, build_contract, check_contract


def _cfg(tok, **kw):
    return PreprocessConfig(
        source="x.parquet",
        tokenizer=tok,
        prompt_column="prompt",
        response_column="response",
        template="Q: {{ prompt }} A: {{ response }}",
        **kw,
    )


def test_contract_is_stable_and_catches_each_change(word_tokenizer, tmp_path):
    base = build_contract(_cfg(word_tokenizer), {"amount.mean": 1.0}, ["neg", "pos"])
    assert base == build_contract(_cfg(word_tokenizer), {"amount.mean": 1.0}, ["neg", "pos"])
    check_contract(base, build_contract(_cfg(word_tokenizer), {"amount.mean": 2.0}, ["neg", "pos"]))

    tok_copy = tmp_path / "tok"
    tok_copy.mkdir()
    for f in Path(word_tokenizer).iterdir():
        (tok_copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((tok_copy / "tokenizer.json").read_bytes())
    data[-2] ^= 0x01  # one byte
    (tok_copy / "tokenizer.json").write_bytes(bytes(data))
    with pytest.raises(ContractMismatchError, match=re.escape('tokenizer.files.tokenizer.json: expected "sha256:')):
        check_contract(base, build_contract(_cfg(str(tok_copy)), {}, ["neg", "pos"]))

    other_template = PreprocessConfig(
        source="x",
        tokenizer=word_tokenizer,
        prompt_column="prompt",
        response_column="response",
        template="Q: {{ prompt }}\nA: {{ response }}",
    )
    with pytest.raises(ContractMismatchError, match=re.escape("template.sha256: expected")):
        check_contract(base, build_contract(other_template, {}, ["neg", "pos"]))
    with pytest.raises(ContractMismatchError, match=re.escape("normalization.lowercase: expected false, got true")):
        check_contract(base, build_contract(_cfg(word_tokenizer, lowercase=True), {}, ["neg", "pos"]))
    with pytest.raises(ContractMismatchError, match=re.escape('label_vocabulary: expected ["neg", "pos"]')):
        check_contract(base, build_contract(_cfg(word_tokenizer), {}, ["neg", "neutral", "pos"]))


def test_default_runner_makes_no_outbound_connection(tmp_path):
    """Every process of the run (driver and Beam workers) logs any non-loopback connect or DNS lookup."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    log = tmp_path / "outbound.log"
    (hooks / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import socket
        _LOG = {str(log)!r}
        _LOCAL = ("127.", "::1", "localhost", "0.0.0.0")

        def _note(what):
            with open(_LOG, "a") as f:
                f.write(what + "\\n")

        _connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo

        def connect(self, address):
            host = address[0] if isinstance(address, tuple) else str(address)
            if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOCAL):
                _note(f"connect {{address}}")
                raise OSError("outbound connections are blocked in this test")
            return _connect(self, address)

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not str(host).startswith(_LOCAL):
                _note(f"dns {{host}}")
            return _getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
    """)
    )
    pd.DataFrame({"text": [f"text {i}" for i in range(200)]}).to_parquet(tmp_path / "in.parquet")
    code = (
        "from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess; "
        f"r = run_preprocess({{'source': {str(tmp_path / 'in.parquet')!r}}}, workdir={str(tmp_path / 'w')!r}); "
        "print(sum(r.row_counts.values()))"
    )
    env = dict(os.environ, PYTHONPATH=f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "200"
    assert not log.exists(), log.read_text()
    # the hook does see an outbound attempt (TEST-NET-3 address, never routed)
    probe = (
        "import socket\ntry:\n    socket.create_connection(('203.0.113.7', 80), timeout=1)\nexcept OSError:\n    pass"
    )
    subprocess.run([sys.executable, "-c", probe], env=env, check=True)
    assert log.read_text() == "dns 203.0.113.7\nconnect ('203.0.113.7', 80)\n"


def test_contract_json_round_trip(word_tokenizer):
    contract = build_contract(_cfg(word_tokenizer), {}, None)
    assert json.loads(json.dumps(contract)) == contract
    assert contract["components"]["code_version"] == "airflow-mlcrit 0.1.0"


def test_training_refuses_a_tokenizer_other_than_the_contracts(word_tokenizer, tmp_path):
    from airflow_mlcrit.core.preprocessing.contract import check_tokenizer

    contract = build_contract(PreprocessConfig(source="x", tokenizer=word_tokenizer), {})
    check_tokenizer(contract, word_tokenizer)
    other = tmp_path / "other"
    other.mkdir()
    for f in Path(word_tokenizer).iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "tokenizer.json").write_text((other / "tokenizer.json").read_text().replace('"[UNK]"', '"[UNKNOWN]"'))
    with pytest.raises(
        ContractMismatchError,
        match=re.escape(
            f"the tokenizer in {other} differs from the one the data was prepared with (transform contract): "
            "tokenizer.json"
        ),
    ):
        check_tokenizer(contract, other)
    check_tokenizer(build_contract(PreprocessConfig(source="x"), {}), other)  # untokenized data: nothing to check
