"""The same statistics as a Beam pipeline: one TableProfiler per split (file or Parquet row
group), merged by a CombineFn. Runs on any runner; the default is Beam's FnApiRunner with one
worker process per core, which never tries to download anything."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from airflow_mlcrit.exceptions import MissingDependencyError


def _splits(files: list[Path], fmt: str) -> list[tuple[str, int | None]]:
    """(file, row group) units of work; CSV and JSONL files are one unit each."""
    if fmt != "parquet":
        return [(str(f), None) for f in files]
    import pyarrow.parquet as pq

    return [(str(f), g) for f in files for g in range(pq.ParquetFile(f).metadata.num_row_groups)]


def profile_split(
    split: tuple[int, tuple[str, int | None]], cfg_dict: dict[str, Any], kinds: dict[str, str], fmt: str
) -> Any:
    """Profile one split in a worker; returns a picklable TableProfiler."""
    import pyarrow.parquet as pq

    from airflow_mlcrit.core.tables import TableSource, iter_batches
    from airflow_mlcrit.core.validation.statistics import StatisticsConfig, TableProfiler

    index, (path, row_group) = split
    cfg = StatisticsConfig.from_dict(cfg_dict)
    profiler = TableProfiler(cfg, kinds=kinds, split=index)
    if row_group is None:
        for batch in iter_batches(TableSource([Path(path)], fmt, path), cfg.batch_size, cfg.columns):
            profiler.add(batch)
    else:
        for batch in pq.ParquetFile(path).iter_batches(
            batch_size=cfg.batch_size, row_groups=[row_group], columns=cfg.columns
        ):
            profiler.add(batch)
    profiler._tokenizer = None
    return profiler


def compute_with_beam(
    cfg: Any, table: Any, kinds: dict[str, str], runner: str | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    from airflow_mlcrit.core.beam import pipeline_options

    try:
        import apache_beam as beam
    except ImportError:
        raise MissingDependencyError("apache-beam", "beam") from None

    class MergeProfiles(beam.CombineFn):
        def create_accumulator(self) -> Any:
            return None

        def add_input(self, acc: Any, profiler: Any) -> Any:
            return profiler if acc is None else acc.merge(profiler)

        def merge_accumulators(self, accs: Any) -> Any:
            merged = None
            for acc in accs:
                if acc is not None:
                    merged = acc if merged is None else merged.merge(acc)
            return merged

        def extract_output(self, acc: Any) -> Any:
            return acc

    splits = list(enumerate(_splits(table.files, table.fmt)))
    cfg_dict = cfg.to_dict()
    with tempfile.TemporaryDirectory(prefix="mlcrit-beam-stats-") as tmp:
        out = Path(tmp) / "statistics.json"
        with beam.Pipeline(options=pipeline_options(runner, options)) as p:
            _ = (
                p
                | "Splits" >> beam.Create(splits, reshuffle=True)
                | "Profile" >> beam.Map(profile_split, cfg_dict, kinds, table.fmt)
                | "Merge" >> beam.CombineGlobally(MergeProfiles())
                | "Write" >> beam.Map(lambda prof, path=str(out): Path(path).write_text(json.dumps(prof.result())))
            )
        return json.loads(out.read_text())
