"""Evaluation gates (fail closed), the blessing they write, and the alias rules that depend on it:
policies, approvals and promotion."""

from airflow_mlcrit.core.gating.blessing import BLESSED_KINDS, blesses, find_blessing
from airflow_mlcrit.core.gating.decide import GateConfig, GateDecision, decide
from airflow_mlcrit.core.gating.policy import AliasPolicy
from airflow_mlcrit.core.gating.promotion import promote, rollback, set_policy

__all__ = [
    "BLESSED_KINDS",
    "AliasPolicy",
    "GateConfig",
    "GateDecision",
    "blesses",
    "decide",
    "find_blessing",
    "promote",
    "rollback",
    "set_policy",
]
