"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations


def get_provider_info() -> dict:
    from airflow_mlcrit import __version__

    return {
        "package-name": "airflow-mlcrit",
        "name": "ML Critical (airflow-mlcrit)",
        "description": "Mission-critical production ML on Airflow: versioned artifacts with digests and "
        "aliases, data validation, Beam preprocessing, fine-tuning, sliced evaluation gates, "
        "promotion/rollback and OpenLineage lineage for every step.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "ML Critical",
                "external-doc-url": "https://github.com/airflow-mlcrit/airflow-mlcrit",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "ML Critical",
                "python-modules": [
                    "airflow_mlcrit.operators.artifacts",
                    "airflow_mlcrit.operators.evaluation",
                    "airflow_mlcrit.operators.preprocessing",
                    "airflow_mlcrit.operators.prompting",
                    "airflow_mlcrit.operators.training",
                    "airflow_mlcrit.operators.validation",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "ML Critical",
                "python-modules": ["airflow_mlcrit.hooks.artifacts", "airflow_mlcrit.hooks.training"],
            }
        ],
        "sensors": [
            {
                "integration-name": "ML Critical",
                "python-modules": ["airflow_mlcrit.sensors.artifacts", "airflow_mlcrit.sensors.training"],
            }
        ],
        "triggers": [
            {
                "integration-name": "ML Critical",
                "python-modules": ["airflow_mlcrit.triggers.artifacts", "airflow_mlcrit.triggers.training"],
            }
        ],
        "plugins": [
            {"name": "mlcrit_registry", "plugin-class": "airflow_mlcrit.plugins.registry.MlcritRegistryPlugin"}
        ],
        "extra-links": [
            "airflow_mlcrit.operators.base.MarquezJobLink",
            "airflow_mlcrit.operators.evaluation.EvaluationReportLink",
            "airflow_mlcrit.operators.evaluation.GateReportLink",
        ],
        "connection-types": [
            {
                "connection-type": "mlcrit",
                "hook-class-name": "airflow_mlcrit.hooks.artifacts.ArtifactStoreHook",
                "hook-name": "ML Critical artifact store",
            }
        ],
        "config": {
            "mlcrit": {
                "description": "Settings of the airflow-mlcrit provider.",
                "options": {
                    "artifact_root": {
                        "description": "Root of the artifact store used when an operator has no "
                        "store_conn_id: a local directory (shared by all workers) or s3://bucket/prefix. "
                        "Empty means $AIRFLOW_HOME/mlcrit/artifacts.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://ml-artifacts/prod",
                        "default": "",
                    },
                    "s3_endpoint_url": {
                        "description": "Endpoint of an S3-compatible store (MinIO, moto) for an s3:// "
                        "artifact_root when no connection is given. Empty means AWS.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "http://minio:9000",
                        "default": "",
                    },
                    "ui_store_conn_id": {
                        "description": "An mlcrit or aws connection whose store the ML registry (the UI "
                        "plugin) shows. Empty means the store of artifact_root and s3_endpoint_url, as "
                        "the tasks use.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "mlcrit_prod",
                        "default": "",
                    },
                    "s3_max_attempts": {
                        "description": "Retries of an S3 request after its first attempt (botocore standard mode).",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "8",
                        "default": "5",
                    },
                    "signing_conn_id": {
                        "description": "Connection whose password is the HMAC key that signs the store's "
                        "manifests and alias history (extra previous_keys: keys still accepted while "
                        "rotating). Set: unsigned or badly signed records are refused. Empty: "
                        "MLCRIT_SIGNING_KEY if set, else no signing. See docs/reliability.md.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "mlcrit_signing",
                        "default": "",
                    },
                    "witness_conn_id": {
                        "description": "Connection (its URI: a SQLAlchemy database URL, e.g. PostgreSQL) of the "
                        "database where every alias move is mirrored outside the artifact store, so that "
                        "deleting the newest history entries is detected instead of read as a rollback. "
                        "Empty: MLCRIT_WITNESS_URL if set, else no witness. See docs/reliability.md.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "mlcrit_witness",
                        "default": "",
                    },
                    "marquez_url": {
                        "description": "Base URL of the Marquez web UI, used for extra links from tasks "
                        "to their lineage. Empty disables the link.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "http://localhost:3000",
                        "default": "",
                    },
                },
            }
        },
    }
