"""The Airflow plugin that puts the ML registry in the Airflow UI: its FastAPI app under
``/mlcrit`` on the api-server and a nav entry "ML registry". Registered through the provider's
``plugins`` (get_provider_info.py), as edge3 does.

Airflow loads provider plugins in every component (the scheduler and each task too), but only the
api-server mounts their apps. The app and the views' URLs are therefore built on first use, not
at import: importing this module reads no config and imports neither FastAPI nor the app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airflow.plugins_manager import AirflowPlugin


class _OnFirstUse(list):
    """A list the plugins manager reads like any other, filled by ``make`` when first read."""

    def __init__(self, make: Callable[[], list[Any]]):
        super().__init__()
        self._make: Callable[[], list[Any]] | None = make

    def _fill(self) -> None:
        if self._make is not None:
            make, self._make = self._make, None
            self.extend(make())

    def __iter__(self) -> Iterator[Any]:
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def __getitem__(self, i: Any) -> Any:
        self._fill()
        return super().__getitem__(i)

    def __bool__(self) -> bool:
        return len(self) > 0


def _base_path() -> str:
    """The path part of ``[api] base_url``: the prefix the UI and plugins are served under."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    return (urlsplit(base).path if "://" in base else base).rstrip("/")


def _apps() -> list[dict[str, Any]]:
    from airflow_mlcrit.plugins.app import create_app

    return [{"app": create_app(), "url_prefix": "/mlcrit", "name": "ML registry"}]


def _views() -> list[dict[str, Any]]:
    base = f"{_base_path()}/mlcrit"
    return [
        {"name": "ML registry", "href": f"{base}/", "destination": "nav", "url_route": "ml-registry"},
        # the UI fills in the placeholders for the task instance or DAG run on screen
        {
            "name": "Evaluation",
            "href": f"{base}/ti/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}?map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "mlcrit-evaluation",
        },
        {
            "name": "Artifacts",
            "href": f"{base}/run/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "mlcrit-artifacts",
        },
    ]


class MlcritRegistryPlugin(AirflowPlugin):
    name = "mlcrit_registry"
    fastapi_apps = _OnFirstUse(_apps)
    external_views = _OnFirstUse(_views)
