"""The same statistics as a Beam pipeline: one TableProfiler per split (file or Parquet row
group), merged by a CombineFn. Runs on any runner; the default is Beam's FnApiRunner with one
worker process per core, which never tries to download anything."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import MissingDependencyError, PipelineIntegrityError

RESULT_FILE = "_staging/statistics.json"  # what the workers report, beside a staged version's files


def column_kinds(f: Any, fmt: str, cfg_dict: dict[str, Any], io: dict) -> dict[str, str]:
    """The kind of every column, from the first file's first batch (in a worker): every file is
    profiled with these, so they agree."""
    from airflow_mlcrit.core.tables import TableSource, iter_batches
    from airflow_mlcrit.core.validation.statistics import StatisticsConfig, check_width, classify

    cfg = StatisticsConfig.from_dict(cfg_dict)
    first = next(iter_batches(TableSource([f], fmt, f.label, io=io), min(cfg.batch_size, 10_000), cfg.columns))
    check_width(first.schema.names, cfg.max_columns)
    return {field_.name: classify(field_, first, cfg) for field_ in first.schema}


def profile_file(item: tuple[int, Any], cfg_dict: dict[str, Any], kinds: dict[str, str], fmt: str, io: dict) -> Any:
    """Profile one file where this runs (a worker), read and checked against its digest there;
    returns a picklable TableProfiler."""
    from airflow_mlcrit.core.tables import TableSource, iter_batches
    from airflow_mlcrit.core.validation.statistics import StatisticsConfig, TableProfiler

    index, f = item
    cfg = StatisticsConfig.from_dict(cfg_dict)
    profiler = TableProfiler(cfg, kinds=kinds, split=index)
    for batch in iter_batches(TableSource([f], fmt, f.label, io=io), cfg.batch_size, cfg.columns):
        profiler.add(batch)
    profiler._tokenizer = None
    return index, profiler


def write_result(merged: Any, location: str, io: dict) -> None:
    """The merged profile, with the indices of the files it covers (checked by the launcher)."""
    from airflow_mlcrit.core.dataplane import write_file

    profiler, files = merged
    data = json.dumps({"statistics": profiler.result(), "files": sorted(files)}).encode()
    write_file(location, RESULT_FILE, lambda out: out.write(data), io)


def compute_with_beam(
    cfg: Any, table: Any, runner: str | None, options: dict[str, Any] | None, *, store: Any = None, output: Any = None
) -> dict[str, Any]:
    """Profile ``table`` (DataFiles, see tables.locate_table) on Beam: each worker reads its files
    where they are; the merged profile comes back through ``output`` (a staged version of
    ``store``), or without one through a local directory (FnApiRunner on this machine)."""
    from airflow_mlcrit.core.beam import pipeline_options, run_pipeline, worker_errors
    from airflow_mlcrit.core.dataplane import check_runner, worker_io

    try:
        import apache_beam as beam
    except ImportError:
        raise MissingDependencyError("apache-beam", "beam") from None
    check_runner(runner)

    class MergeProfiles(beam.CombineFn):
        """(merged profile, indices of the files in it): a profile the runner lost shows."""

        def create_accumulator(self) -> Any:
            return None, set()

        def add_input(self, acc: Any, item: Any) -> Any:
            return self.merge_accumulators([acc, (item[1], {item[0]})])

        def merge_accumulators(self, accs: Any) -> Any:
            merged, files = None, set()
            for profiler, covered in accs:
                if profiler is not None:
                    merged = profiler if merged is None else merged.merge(profiler)
                files |= covered
            return merged, files

        def extract_output(self, acc: Any) -> Any:
            return acc

    io = worker_io(store, options)
    cfg_dict = cfg.to_dict()
    with tempfile.TemporaryDirectory(prefix="mlcrit-beam-stats-") as tmp:
        location = output.location if output is not None else tmp
        p = beam.Pipeline(options=pipeline_options(runner, options))
        kinds = p | "First" >> beam.Create(table.files[:1]) | "Kinds" >> beam.Map(column_kinds, table.fmt, cfg_dict, io)
        _ = (
            p
            | "Files" >> beam.Create(list(enumerate(table.files)), reshuffle=True)
            | "Profile" >> beam.Map(profile_file, cfg_dict, beam.pvalue.AsSingleton(kinds), table.fmt, io)
            | "Merge" >> beam.CombineGlobally(MergeProfiles())
            | "Write" >> beam.Map(write_result, location, io)
        )
        with worker_errors():
            run_pipeline(p)
        if output is not None:
            done = json.loads(store.staged_bytes(output, RESULT_FILE))
        else:
            done = json.loads(Path(tmp, RESULT_FILE).read_text())
    missing = sorted(set(range(len(table.files))) - set(done["files"]))
    if missing:
        raise PipelineIntegrityError(
            f"the {runner or 'FnApiRunner'} runner lost the profiles of {len(missing)} of {len(table.files)} files "
            f"(first: {table.files[missing[0]].label}); the statistics would be incomplete, so nothing was committed"
        )
    return done["statistics"]
