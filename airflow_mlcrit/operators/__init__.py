"""Operators of airflow-mlcrit. Importing them loads nothing heavy (no torch, Beam or GX)."""

from airflow_mlcrit.operators.approval import PromotionApprovalOperator
from airflow_mlcrit.operators.artifacts import RegisterArtifactOperator
from airflow_mlcrit.operators.evaluation import (
    EvaluateModelOperator,
    EvaluationGateOperator,
    PromoteModelOperator,
    RollbackModelOperator,
)
from airflow_mlcrit.operators.preprocessing import BeamPreprocessOperator
from airflow_mlcrit.operators.prompting import PromptEvaluationOperator, PromptOrFineTuneBranchOperator
from airflow_mlcrit.operators.training import FineTuneOperator
from airflow_mlcrit.operators.validation import (
    ComputeStatisticsOperator,
    InferSchemaOperator,
    ValidateDataOperator,
)

__all__ = [
    "BeamPreprocessOperator",
    "ComputeStatisticsOperator",
    "EvaluateModelOperator",
    "EvaluationGateOperator",
    "FineTuneOperator",
    "InferSchemaOperator",
    "PromoteModelOperator",
    "PromotionApprovalOperator",
    "PromptEvaluationOperator",
    "PromptOrFineTuneBranchOperator",
    "RegisterArtifactOperator",
    "RollbackModelOperator",
    "ValidateDataOperator",
]
