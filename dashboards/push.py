"""``gramlink dashboards push``: the datasource, the folder and every dashboard into a
running Grafana through its HTTP API (grafana-client), idempotently.

Each object is read first and written only when it differs, so a second push
prints "left alone" for everything. A dashboard that exists is written with the
``version`` Grafana reported and ``overwrite: false``: if someone saved it in
Grafana in between, Grafana answers 412 and the push stops with a version
conflict instead of losing their change silently.

Errors (one tree, each with the exit code the command returns)::

    PushError
    ├── PushRefused      401/403: the token is wrong or lacks the rights   (exit 4)
    ├── PushUnreachable  no answer: network, timeout, 5xx                  (exit 3)
    ├── PushConflict     412/409: changed in Grafana since it was read     (exit 1)
    └── PushFailed       any other answer (400, 404 on a write, ...)       (exit 1)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
)

from dashboards import build, datasource
from dashboards.board import FOLDER
from runtime.exits import ExitCode

FOLDER_UID: Final = "gramlink"
MESSAGE: Final = "gramlink dashboards push"
T = TypeVar("T")


class PushError(Exception):
    exit_code: ExitCode = ExitCode.INTERNAL


class PushRefused(PushError):
    exit_code = ExitCode.REFUSED


class PushUnreachable(PushError):
    exit_code = ExitCode.DEPENDENCY_DOWN


class PushConflict(PushError):
    exit_code = ExitCode.INTERNAL


class PushFailed(PushError):
    exit_code = ExitCode.INTERNAL


@dataclass(frozen=True)
class PushSettings:
    grafana_url: str
    token: str
    influx_url: str
    influx_database: str = "gramlink"
    influx_user: str = "grafana"
    influx_password: str = ""
    timeout_s: float = 10.0


def _message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict) and "message" in response:
        return str(response["message"])
    return str(exc.message)[:200]


@contextmanager
def _mapped(what: str, settings: PushSettings) -> Iterator[None]:
    """grafana-client's (and niquests') errors → ours, at this one boundary."""
    try:
        yield
    except GrafanaTimeoutError as exc:
        raise PushUnreachable(
            f"{what}: Grafana at {settings.grafana_url} did not answer within "
            f"{settings.timeout_s:g} s"
        ) from exc
    except GrafanaServerError as exc:
        answer = f"{exc.status_code}: {_message(exc)}"
        raise PushUnreachable(f"{what}: Grafana answered {answer}") from exc
    except GrafanaClientError as exc:
        if exc.status_code in (401, 403):
            raise PushRefused(
                f"{what}: Grafana refused the token ({exc.status_code} {_message(exc)}); "
                "check --token / GRAMLINK_GRAFANA_TOKEN: a service-account token with the "
                "Editor role, and Admin for the datasource"
            ) from exc
        if exc.status_code in (409, 412):
            raise PushConflict(
                f"{what}: changed in Grafana since it was read ({exc.status_code} "
                f"{_message(exc)}); run the push again to overwrite with the generated "
                "dashboards, or save the change into dashboards/ first"
            ) from exc
        raise PushFailed(f"{what}: Grafana answered {exc.status_code}: {_message(exc)}") from exc
    except GrafanaException as exc:  # status 0: no answer at all
        raise PushUnreachable(
            f"{what}: cannot reach Grafana at {settings.grafana_url}: {exc.message}"
        ) from exc
    except OSError as exc:  # niquests' ConnectionError and friends
        raise PushUnreachable(
            f"{what}: cannot reach Grafana at {settings.grafana_url}: {exc}"
        ) from exc


def _get_or_none(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def datasource_body(s: PushSettings) -> dict[str, Any]:
    return {
        "uid": datasource.UID,
        "name": datasource.NAME,
        "type": datasource.TYPE,
        "access": "proxy",
        "url": s.influx_url,
        "user": s.influx_user,
        "basicAuth": False,
        "isDefault": False,
        "jsonData": {"dbName": s.influx_database, "httpMode": "POST", "version": "InfluxQL"},
    }


def _datasource(api: GrafanaApi, s: PushSettings) -> str:
    wanted = datasource_body(s)
    secure = {"secureJsonData": {"password": s.influx_password}} if s.influx_password else {}
    current = _get_or_none(lambda: api.datasource.get_datasource_by_uid(datasource.UID))
    if current is None:
        try:
            api.datasource.create_datasource({**wanted, **secure})
        except GrafanaClientError as exc:
            if exc.status_code != 409:
                raise
            raise PushFailed(
                f"datasource: Grafana has a datasource named {datasource.NAME!r} with another "
                f"uid ({_message(exc)}); rename or delete it, then push again"
            ) from exc
        return f"created    datasource {datasource.NAME} ({datasource.UID})"
    json_data = current.get("jsonData") or {}
    same = all(current.get(k) == v for k, v in wanted.items() if k != "jsonData") and all(
        json_data.get(k) == v for k, v in wanted["jsonData"].items()
    )
    password_set = bool((current.get("secureJsonFields") or {}).get("password"))
    if same and (password_set or not s.influx_password):
        return f"left alone datasource {datasource.NAME} ({datasource.UID})"
    body = {**wanted, "jsonData": {**json_data, **wanted["jsonData"]}}
    if not password_set:
        body.update(secure)
    api.datasource.update_datasource_by_uid(datasource.UID, body)
    return f"changed    datasource {datasource.NAME} ({datasource.UID})"


def _folder(api: GrafanaApi) -> str:
    current = _get_or_none(lambda: api.folder.get_folder(FOLDER_UID))
    if current is None:
        api.folder.create_folder(FOLDER, uid=FOLDER_UID)
        return f"created    folder {FOLDER} ({FOLDER_UID})"
    if current.get("title") == FOLDER:
        return f"left alone folder {FOLDER} ({FOLDER_UID})"
    api.folder.update_folder(FOLDER_UID, title=FOLDER, version=current.get("version"))
    return f"changed    folder {FOLDER} ({FOLDER_UID})"


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    """A dashboard without what Grafana assigns (id, version)."""
    data = copy.deepcopy(dashboard)
    data.pop("id", None)
    data.pop("version", None)
    return data


def _dashboard(api: GrafanaApi, name: str) -> str:
    wanted = build.model(name)
    uid, title = wanted["uid"], wanted["title"]
    current = _get_or_none(lambda: api.dashboard.get_dashboard(uid))
    body: dict[str, Any] = {"folderUid": FOLDER_UID, "overwrite": False, "message": MESSAGE}
    if current is None:
        api.dashboard.update_dashboard({**body, "dashboard": {**wanted, "id": None}})
        return f"created    dashboard {title} ({uid})"
    existing = current.get("dashboard") or {}
    in_folder = (current.get("meta") or {}).get("folderUid") == FOLDER_UID
    if in_folder and _comparable(existing) == _comparable(wanted):
        return f"left alone dashboard {title} ({uid}, version {existing.get('version')})"
    version = existing.get("version")
    dashboard = {**wanted, "id": existing.get("id"), "version": version}
    answer = api.dashboard.update_dashboard({**body, "dashboard": dashboard})
    new_version = answer.get("version") if isinstance(answer, dict) else None
    return f"changed    dashboard {title} ({uid}, version {version} -> {new_version})"


def push(settings: PushSettings) -> Iterator[str]:
    """Create or update the datasource, the folder and every dashboard; one line each."""
    api = GrafanaApi.from_url(
        settings.grafana_url, credential=settings.token, timeout=settings.timeout_s
    )
    with _mapped("datasource", settings):
        yield _datasource(api, settings)
    with _mapped("folder", settings):
        yield _folder(api)
    for name in build.DASHBOARDS:
        with _mapped(f"dashboard {name}", settings):
            yield _dashboard(api, name)


def push_command(influx_url: str, database: str, user: str, password_hint: str) -> str:
    """The one command that pushes to a Grafana on this machine (printed by ``make demo``)."""
    return (
        f"GRAMLINK_GRAFANA_TOKEN=<Grafana service-account token> "
        f"GRAMLINK_GRAFANA_INFLUX_PASSWORD=<{password_hint}> "
        f"gramlink dashboards push --grafana-url http://127.0.0.1:3000 --influx-url {influx_url} "
        f"--influx-database {database} --influx-user {user}"
    )
