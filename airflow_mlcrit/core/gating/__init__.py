"""Evaluation gates (fail closed) and the promotion rule that depends on their blessings."""

from airflow_mlcrit.core.gating.decide import GateConfig, GateDecision, decide
from airflow_mlcrit.core.gating.promotion import BLESSED_KINDS, find_blessing, promote, rollback

__all__ = ["BLESSED_KINDS", "GateConfig", "GateDecision", "decide", "find_blessing", "promote", "rollback"]
