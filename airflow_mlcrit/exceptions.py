"""Errors raised by airflow-mlcrit: one tree rooted at MlcritError."""

from __future__ import annotations


class MlcritError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MlcritError, ValueError):
    """A configuration value is missing or invalid; the message names the field and the fix."""


class ArtifactError(MlcritError):
    """Base class of artifact store errors."""


class InvalidReferenceError(ArtifactError, ValueError):
    """An artifact kind, name, alias or reference does not follow the allowed syntax."""


class ArtifactNotFoundError(ArtifactError, LookupError):
    """The referenced artifact, version or alias does not exist (or is not committed)."""


class ArtifactIntegrityError(ArtifactError):
    """Stored bytes do not match the digest recorded in the manifest."""


class ArtifactConflictError(ArtifactError):
    """A compare-and-swap lost: someone else moved the alias or took the version first."""


class FencedError(ArtifactConflictError):
    """A task try's write was refused because a newer try of the same task instance has begun
    (fencing): a process that outlived its task cannot commit after the retry started."""


class DataValidationError(MlcritError):
    """Data failed a validation check whose policy is `fail`."""


class PipelineIntegrityError(MlcritError):
    """A data pipeline's runner lost or duplicated records on the way: its output is refused."""


class AirflowApiError(MlcritError):
    """Airflow's REST API refused a request (the message has its status and detail) or did not answer."""


class GateFailedError(MlcritError):
    """An evaluation gate did not bless the candidate."""


class MissingDependencyError(MlcritError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(f"{package} is required for this feature: pip install 'airflow-mlcrit[{extra}]'")
        self.package = package
        self.extra = extra


def some(names: object, limit: int = 30) -> str:
    """``names`` for an error message: the first ``limit`` of them, and how many more (a
    100,000-column header must not make a 1 MB message)."""
    names = list(names)  # type: ignore[call-overload]
    if len(names) <= limit:
        return repr(names)
    return f"{names[:limit]!r} and {len(names) - limit:,} more"
