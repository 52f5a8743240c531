import re

import pytest

from airflow_mlcrit.core.artifacts import ArtifactRef, parse_ref
from airflow_mlcrit.exceptions import InvalidReferenceError

PATTERN_HINT = "[a-z0-9][a-z0-9._-]*"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model/sentiment@v3", ArtifactRef("model", "sentiment", version=3)),
        ("model/sentiment@latest", ArtifactRef("model", "sentiment")),
        ("model/sentiment", ArtifactRef("model", "sentiment")),
        ("adapter/s.v2_x-y@production", ArtifactRef("adapter", "s.v2_x-y", alias="production")),
    ],
)
def test_parse_ref(text, expected):
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref


def test_str_round_trip():
    assert str(parse_ref("dataset/raw")) == "dataset/raw@latest"
    assert str(parse_ref("dataset/raw@v12")) == "dataset/raw@v12"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x" * 300, "Upper", "-lead", "a..b", "a b", "é"])
def test_bad_names_name_the_pattern(bad):
    with pytest.raises(InvalidReferenceError, match=re.escape(PATTERN_HINT)):
        ArtifactRef("dataset", bad)


def test_path_traversal_in_reference_is_rejected():
    for text in ("dataset/../etc@v1", "dataset/a/b@v1", "../dataset/x"):
        with pytest.raises(InvalidReferenceError):
            parse_ref(text)


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(InvalidReferenceError, match=re.escape("unknown artifact kind 'datset': use one of adapter,")):
        parse_ref("datset/x")


def test_reserved_alias_names():
    with pytest.raises(InvalidReferenceError, match="alias 'v2' is reserved"):
        ArtifactRef("model", "m", alias="v2")
    for lookalike in ("v1.0", "v-1", "v2rc"):  # read like versions
        with pytest.raises(InvalidReferenceError, match=re.escape(f"alias {lookalike!r} is reserved")):
            parse_ref(f"model/m@{lookalike}")
    assert parse_ref("model/m@validated").alias == "validated"
    for digits in (300, 5000):  # a clear error, not an OSError from a file name that long
        with pytest.raises(InvalidReferenceError, match="more than 9 digits"):
            parse_ref("model/m@v" + "9" * digits)


def test_version_zero_rejected():
    with pytest.raises(InvalidReferenceError, match=re.escape("invalid version 'v0'")):
        parse_ref("model/m@v0")
