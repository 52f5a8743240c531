"""Bad input: one clear DataValidationError each, raised before anything is written."""

import re

import pandas as pd
import pytest

from airflow_mlcrit.core.validation.schema import infer_schema
from airflow_mlcrit.core.validation.statistics import compute_statistics
from airflow_mlcrit.core.validation.validate import validate
from airflow_mlcrit.exceptions import DataValidationError
from tests.core.validation.data import clean, write


def _bad_inputs(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "quotes.csv").write_text('text,label\n"unbalanced,1\nok,0\n')
    (tmp_path / "latin1.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    d = tmp_path / "parts"
    d.mkdir()
    clean(10).to_parquet(d / "a.parquet", index=False)
    clean(10).assign(amount="n/a").to_parquet(d / "b.parquet", index=False)
    return {
        "empty": (str(tmp_path / "empty.csv"), f"{tmp_path / 'empty.csv'} is empty (0 bytes): nothing to read"),
        "missing": (str(tmp_path / "nope.parquet"), f"data source {tmp_path / 'nope.parquet'} does not exist"),
        "quotes": (str(tmp_path / "quotes.csv"), f"cannot read {tmp_path / 'quotes.csv'} as csv: CSV parse error"),
        "latin1": (
            str(tmp_path / "latin1.csv"),
            f"{tmp_path / 'latin1.csv'} is not valid UTF-8: column 'text', data row 1",
        ),
        "mixed": (
            str(d),
            f"{d / 'b.parquet'} does not match the schema of the first file: column 'amount' is large_string, "
            "expected double",
        ),
    }


@pytest.mark.parametrize("case", ["empty", "missing", "quotes", "latin1", "mixed"])
def test_bad_input_is_one_clear_error(tmp_path, case):
    source, message = _bad_inputs(tmp_path)[case]
    with pytest.raises(DataValidationError, match=re.escape(message)):
        compute_statistics({"source": source})
    with pytest.raises(DataValidationError, match=re.escape(message)):
        validate({"source": source}, workdir=tmp_path / "w")
    assert not (tmp_path / "w" / "report.json").exists()


def test_parquet_with_other_types_than_the_declared_schema(tmp_path):
    schema = infer_schema(compute_statistics({"source": write(clean(50), tmp_path / "a.parquet")}).statistics)
    changed = clean(50).assign(amount=lambda df: df.amount.astype(str))
    with pytest.raises(
        DataValidationError,
        match=re.escape(
            "does not match the declared schema: column 'amount' is large_string, the schema declares double"
        ),
    ):
        validate({"source": write(changed, tmp_path / "b.parquet"), "schema": schema}, workdir=tmp_path / "w")
    assert not (tmp_path / "w" / "report.json").exists()


def test_header_only_csv_has_no_rows(tmp_path):
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataValidationError, match=re.escape(f"{tmp_path / 'h.csv'} has no rows")):
        compute_statistics({"source": str(tmp_path / "h.csv")})


def test_unknown_format_is_a_config_error(tmp_path):
    from airflow_mlcrit.exceptions import ConfigError

    (tmp_path / "d").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "d" / "x.parquet")
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "d" / "y.csv")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        compute_statistics({"source": str(tmp_path / "d")})
