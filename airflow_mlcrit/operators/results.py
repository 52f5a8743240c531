"""What each operator returns (its XCom ``return_value``): one shape, a TypedDict per operator.

Every result has ``ref`` (the pinned ``kind/name@vN`` the step committed or moved to), ``uri``,
``digest`` and ``summary`` (headline numbers). Other artifacts a step produced are named refs at
the top level (``clean``, ``quarantine``, ``contract``...). Each key is also pushed as an XCom of
its own (``multiple_outputs``), so pass refs downstream as XComArgs, ``upstream.output["clean"]``,
which fail with XComNotFound on a missing key instead of rendering an empty string.
"""

from __future__ import annotations

import typing
from typing import Any, TypedDict


class ArtifactResult(TypedDict):
    """The keys every result has."""

    ref: str  # the artifact version the step committed (or moved an alias to), pinned: kind/name@vN
    uri: str  # where that version's files are (file:// or s3://)
    digest: str  # its content digest, sha256:...
    summary: dict[str, Any]  # headline numbers of the step; never data


class RegisterArtifactResult(ArtifactResult):
    """``RegisterArtifactOperator``: ref = the new version. summary: files, bytes."""


class ComputeStatisticsResult(ArtifactResult):
    """``ComputeStatisticsOperator``: ref = the ``statistics`` version. summary: rows, columns..."""


class InferSchemaResult(ArtifactResult):
    """``InferSchemaOperator``: ref = the ``schema`` version. summary: columns, required."""


class ValidateDataResult(ArtifactResult):
    """``ValidateDataOperator``: ref = the ``validation_report`` version. summary: status, failed,
    warned (and input_rows, clean_rows, quarantined_rows when the config quarantines)."""

    report: str  # the validation_report version (= ref)
    clean: str  # what downstream steps read: the clean rows if the config quarantines, else the validated input
    quarantine: str | None  # the quarantine version, None when the config quarantines nothing


class BeamPreprocessResult(ArtifactResult):
    """``BeamPreprocessOperator``: ref = the ``transformed_dataset`` version. summary: row_counts,
    input_rows, transform_contract."""

    contract: str  # the transform_contract version


class FineTuneResult(ArtifactResult):
    """``FineTuneOperator``: ref = the ``adapter`` (LoRA) or ``model`` (full) version. summary:
    final_loss (mean of the last steps), eval_loss, steps, labels, trainable_params, base_model."""

    merged: str | None  # the merged model version (merge_adapter=True), else None


class EvaluationResult(ArtifactResult):
    """``EvaluateModelOperator`` and ``PromptEvaluationOperator``: ref = the ``evaluation``
    version. summary: the overall candidate metrics."""

    report_url: str  # the HTML report in the store


class GateResult(ArtifactResult):
    """``EvaluationGateOperator``: ref = the ``blessing`` version. summary: decision, failures."""

    blessing: str  # the blessing version (= ref)
    report_url: str  # the evaluation report with the decision and every verdict on top


class AliasMoveResult(ArtifactResult):
    """``PromoteModelOperator`` and ``RollbackModelOperator``: ref = the version the alias points
    at now. summary: the alias-history entry (seq, from_version, to_version, reason, actor...)."""

    alias: str  # kind/name@alias that was moved
    previous: str | None  # the version it pointed at before, None for a first promotion


def shaped(shape: type, **values: Any) -> dict[str, Any]:
    """``values`` as ``shape``; a missing or extra key is a bug in the operator, caught here."""
    keys = set(typing.get_type_hints(shape))
    if set(values) != keys:
        raise TypeError(f"{shape.__name__} result keys {sorted(values)} differ from its declared keys {sorted(keys)}")
    return dict(values)


def artifact_result(shape: type, manifest: Any, summary: dict[str, Any], **refs: Any) -> dict[str, Any]:
    """The result of a step that committed (or reused) ``manifest``."""
    return shaped(shape, ref=str(manifest.ref), uri=manifest.uri, digest=manifest.digest, summary=summary, **refs)
