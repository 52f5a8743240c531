"""Bad input corpus (property-based): random and adversarial tables and texts fed to the
statistics, validation, preprocessing and evaluation core functions. Each call either succeeds
or raises an MlcritError subclass with a message: never another exception type, never a hang
(a hard per-example alarm, on top of hypothesis' deadline).

The corpus: empty files, a header only, a huge single cell, NaN/inf (as text and as floats),
mixed types in a column, non-UTF-8 bytes, control characters, a 100,000-column header,
duplicated and empty column names, ragged rows, JSON that is not an object per line."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_mlcrit.exceptions import MlcritError

pytestmark = pytest.mark.slow
HUGE = "x" * 4_000_000  # one 4 MB cell
WIDE = ",".join(f"c{i}" for i in range(100_000))  # a 100,000-column header


class Hang(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` in the code under test eats it."""


@contextlib.contextmanager
def hard_deadline(seconds: float):
    def fire(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def only_mlcrit_errors(fn, *args, seconds: float = 60, **kwargs):
    """Run fn: success or an MlcritError with a message. Anything else fails the example."""
    with hard_deadline(seconds):
        try:
            return fn(*args, **kwargs)
        except MlcritError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            return exc


# ---- the corpus ------------------------------------------------------------------------

control = st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Co"])
nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=control, max_size=10),
    st.sampled_from(["", " ", "NaN", "nan", "inf", "-inf", "Infinity", "null", "None", "1e309", "\x00", '"', "\r\n"]),
    st.just(HUGE),
)
cell = st.one_of(
    nasty_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
column_name = st.one_of(st.sampled_from(["text", "label", "pred", "state", "", "text"]), st.text(max_size=8))


def _csv_field(value) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


@st.composite
def tables(draw, known: list[str] = ()) -> tuple[str, bytes]:
    """(format, file bytes) of an adversarial table; ``known``: names it has, among random ones."""
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    columns = draw(st.permutations([*known, *draw(st.lists(column_name, max_size=5 - len(known)))]))
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=12))
    if fmt == "csv":
        lines = [",".join(_csv_field(c) for c in columns)] + [",".join(_csv_field(v) for v in r) for r in rows]
        if draw(st.booleans()) and rows:  # a ragged row
            lines.append(",".join(["a"] * (len(columns) + 2)))
        data = "\n".join(lines).encode()
    else:
        out = []
        for r in rows:
            obj = dict(zip(columns, r, strict=True))  # duplicated names: last wins, as in JSON itself
            out.append(json.dumps(obj, allow_nan=True))
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["[1, 2]", '"text"', "{broken", "null", "{}"])))
        data = "\n".join(out).encode()
    if draw(st.booleans()):  # non-UTF-8 bytes somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80abc"])) + data[at:]
    return fmt, data


FIXED = [
    ("csv", b""),
    ("jsonl", b""),
    ("csv", b"text,label\n"),
    ("csv", b"\n\n\n"),
    ("csv", f"text,label\n{HUGE},1\n".encode()),
    ("csv", (WIDE + "\n" + ",".join("1" for _ in range(100_000)) + "\n").encode()),
    ("csv", b"text,text,label\na,b,1\nc,d,0\n"),
    ("csv", b"text,label\nnan,inf\n-inf,NaN\n"),
    ("csv", b"text,label,state\nabc,,9007199254740993\n"),  # an integer beyond float64's exact range
    ("csv", b"text,label\n\xff\xfe,1\n"),
    ("csv", b"text,label\nhello\x00world,1\n\x07\x1b[31m,0\n"),
    ("jsonl", b'{"text": NaN, "label": Infinity}\n{"text": "a", "label": -Infinity}\n'),
    ("jsonl", b'{"text": "a", "label": 1}\n{"text": 2, "label": "x"}\n{"text": [1], "label": {"a": 1}}\n'),
    ("jsonl", b'{"text": "a", "text": "b", "label": 1}\n'),
    ("jsonl", b"[1, 2, 3]\n"),
    ("jsonl", b'{"text": "\xff", "label": 1}\n'),
    (
        "csv",
        b"text,label,pred,base,state\n"
        + b"".join(
            b"t%d,%s,%s,a,%s\n"
            % (i, b"ab"[i % 2 : i % 2 + 1], b"ab"[i % 3 % 2 : i % 3 % 2 + 1], b"CA" if i % 4 else b"NE")
            for i in range(40)
        ),
    ),
]
TABLES = st.one_of(tables(), tables(known=["text", "label", "state"]))


@st.composite
def eval_tables(draw) -> tuple[str, bytes]:
    """Eval datasets with adversarial texts and slice values; labels from a small set, or not."""
    label = st.one_of(st.sampled_from(["a", "b", "c"]), cell) if draw(st.booleans()) else st.sampled_from("abc")
    rows = draw(
        st.lists(
            st.fixed_dictionaries({"text": cell, "label": label, "pred": label, "base": label, "state": cell}),
            min_size=1,
            max_size=40,
        )
    )
    if draw(st.booleans()):
        data = "\n".join(json.dumps(r, allow_nan=True) for r in rows).encode()
        return "jsonl", data
    lines = ["text,label,pred,base,state"] + [",".join(_csv_field(v) for v in r.values()) for r in rows]
    return "csv", "\n".join(lines).encode()


@st.composite
def text_tables(draw) -> tuple[str, bytes]:
    """JSONL texts for preprocessing: adversarial texts, labels of any type."""
    label = draw(st.sampled_from([st.sampled_from(["pos", "neg"]), st.integers(0, 3), st.none(), cell]))
    text = st.one_of(nasty_text, st.none()) if draw(st.booleans()) else cell
    rows = draw(st.lists(st.fixed_dictionaries({"text": text, "label": label}), min_size=1, max_size=30))
    return "jsonl", "\n".join(json.dumps(r, allow_nan=True) for r in rows).encode()


ANY = st.one_of(TABLES, eval_tables(), text_tables())


def _write(tmp: Path, fmt: str, data: bytes) -> Path:
    path = tmp / f"table.{fmt}"
    path.write_bytes(data)
    return path


def examples(*cases):
    def wrap(fn):
        for case in cases:
            fn = example(case=case)(fn)
        return fn

    return wrap


def corpus(max_examples: int, deadline_s: float, strategy=TABLES):
    return lambda fn: settings(
        max_examples=max_examples,
        deadline=timedelta(seconds=deadline_s),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
        derandomize=True,  # the same corpus on every machine: CI failures reproduce
        database=None,
    )(examples(*FIXED)(given(case=strategy)(fn)))


# ---- the targets -----------------------------------------------------------------------


@corpus(max_examples=150, deadline_s=30, strategy=ANY)
def test_statistics(tmp_path_factory, case):
    from airflow_mlcrit.core.validation.statistics import compute_statistics

    path = _write(tmp_path_factory.mktemp("stats"), *case)
    result = only_mlcrit_errors(compute_statistics, {"source": str(path), "format": case[0], "sample_size": 10})
    if not isinstance(result, MlcritError):
        json.dumps(result.statistics, allow_nan=False)  # statistics are strict JSON: no NaN/inf leak out


CLEAN = b"text,label,state\n" + b"".join(b"message %d is fine,pos,CA\n" % i for i in range(20))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from airflow_mlcrit.core.validation.schema import infer_schema
    from airflow_mlcrit.core.validation.statistics import compute_statistics

    path = _write(tmp_path_factory.mktemp("clean"), "csv", CLEAN)
    stats = compute_statistics({"source": str(path)}).statistics
    return stats, infer_schema(stats)


@corpus(max_examples=100, deadline_s=30, strategy=ANY)
def test_validation(tmp_path_factory, reference, case):
    from airflow_mlcrit.core.validation.validate import validate

    stats, schema = reference
    work = tmp_path_factory.mktemp("validate")
    cfg = {
        "source": str(_write(work, *case)),
        "format": case[0],
        "schema": schema,
        "baseline_statistics": stats,
        "text_length_limits": {"text": 50},
    }
    only_mlcrit_errors(validate, cfg, workdir=work / "out")


@corpus(max_examples=12, deadline_s=60, strategy=ANY)
def test_validation_with_a_great_expectations_suite(tmp_path_factory, reference, case):
    from airflow_mlcrit.core.validation.validate import validate

    work = tmp_path_factory.mktemp("gx")
    cfg = {"source": str(_write(work, *case)), "format": case[0], "schema": reference[1], "suite": "from_schema"}
    only_mlcrit_errors(validate, cfg, workdir=work / "out", seconds=120)


@corpus(max_examples=25, deadline_s=90, strategy=st.one_of(TABLES, text_tables(), text_tables(), text_tables()))
def test_preprocessing(tmp_path_factory, case):
    from airflow_mlcrit.core.preprocessing.pipeline import run_preprocess

    fmt, data = case
    if fmt == "csv":  # preprocessing reads JSONL or Parquet: CSV must be refused clearly, so keep a few
        data = data[:2000]
    work = tmp_path_factory.mktemp("prep")
    cfg = {"source": str(_write(work, fmt, data)), "label_column": "label", "min_chars": 1, "vocabulary_size": 5}
    # a quarter of the corpus (a fixed function of the case) on FnApiRunner's worker processes, where
    # a worker's error crosses a process boundary as text; the rest in-process, 4x faster
    if zlib.crc32(repr(case).encode()) % 4:
        cfg["pipeline_options"] = {"direct_running_mode": "in_memory"}
    only_mlcrit_errors(run_preprocess, cfg, workdir=work / "out", seconds=120)


@corpus(max_examples=150, deadline_s=30, strategy=st.one_of(TABLES, eval_tables(), eval_tables(), eval_tables()))
def test_evaluation(tmp_path_factory, case):
    from airflow_mlcrit.core.evaluation.evaluate import evaluate, read_frame

    path = _write(tmp_path_factory.mktemp("eval"), *case)

    def run():
        frame = read_frame(str(path))
        cfg = {
            "task": "classification",
            "prediction_column": "pred",
            "baseline_prediction_column": "base",
            "metrics": ["accuracy", "macro_f1"],
            "slices": ["state"],
            "min_slice_size": 1,
            "replicates": 50,
        }
        result, _ = evaluate(cfg, frame, None)
        for row in result["slices"]:
            for m in row["candidate"].values():
                assert m["value"] is None or math.isfinite(m["value"])
        return result

    only_mlcrit_errors(run)
