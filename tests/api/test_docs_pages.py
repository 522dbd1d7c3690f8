"""``/docs`` (Swagger UI) and ``/redoc`` work on a machine without internet.

Their scripts come from the API itself (fastapi-offline's copies), without a
token. A real headless Chromium that can reach nothing but 127.0.0.1 opens the
pages of a running ``gramlink api`` and must find every operation listed; the
same check on a page that loads Swagger UI from a CDN (FastAPI's default) finds
none, so the check cannot pass by accident.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from gramlink.services import InfluxService, MosquittoService
from gramlink.services.process import ServiceError, bound_socket, free_port, wait_until
from tests.api import browser
from tests.api.conftest import MASTER

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
needs_chromium = pytest.mark.skipif(
    browser.CHROMIUM is None,
    reason="Debian package chromium is not installed (`make deps` installs it)",
)


def operation_ids(spec: dict) -> set[str]:  # type: ignore[type-arg]
    return {
        operation["operationId"]
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def swagger_listed(dom: str) -> set[str]:
    """Operation ids of the operation blocks Swagger UI rendered (``operations-{tag}-{id}``)."""
    return set(re.findall(r'class="opblock opblock-\w+[^"]*" id="operations-[^"-]+-([^"]+)"', dom))


def redoc_listed(dom: str) -> set[str]:
    """Operation ids of the operation sections ReDoc rendered."""
    return set(re.findall(r'data-section-id="(?:[^"]*/)?operation/([^"]+)"', dom))


def test_docs_pages_and_their_assets_need_no_token_and_no_cdn() -> None:
    client = TestClient(create_app(ApiSettings(master_secret=MASTER)))  # type: ignore[arg-type]
    assert client.get("/openapi.json").status_code == 200
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200, (page, response.text)
        urls = browser.assets_of(response.text)
        assert any(url.endswith(".js") for url in urls), (page, urls)
        for url in urls:
            assert url.startswith("/docs-assets/"), f"{page} loads {url} from elsewhere"
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url


@dataclass
class RunningApi:
    url: str
    spec: dict  # type: ignore[type-arg]
    log: Path


@pytest.fixture(scope="module")
def running_api(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: MosquittoService, influx: InfluxService
) -> Iterator[RunningApi]:
    """``gramlink api`` as a process of its own, as a person would start it."""
    home = tmp_path_factory.mktemp("api-docs")
    port = free_port()
    env = {
        **os.environ,
        "GRAMLINK_API_MASTER_SECRET": MASTER,
        "GRAMLINK_API_DB_URL": f"sqlite:///{home / 'api.sqlite'}",
        "GRAMLINK_API_MQTT_URL": mosquitto.url,
        "GRAMLINK_API_MQTT_ADMIN_PASSWORD": mosquitto.admin_password,
        "GRAMLINK_API_INFLUX_URL": influx.url,
        "GRAMLINK_API_INFLUX_PASSWORD": influx.admin_password,
        "GRAMLINK_API_PRESENCE": "false",
    }
    url = f"http://127.0.0.1:{port}"
    log_path = home / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gramlink", "api", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_until(lambda: _answers(url) or process.poll() is not None, 60, "gramlink api")
        except ServiceError:
            pytest.fail(f"gramlink api did not answer: {log_path.read_text()[-2000:]}")
        if process.poll() is not None:
            pytest.fail(f"gramlink api exited {process.returncode}: {log_path.read_text()[-2000:]}")
        yield RunningApi(url, httpx.get(f"{url}/openapi.json", timeout=10).json(), log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_running_api_still_wants_a_token_for_its_operations(running_api: RunningApi) -> None:
    assert httpx.get(f"{running_api.url}/v1/centres", timeout=10).status_code == 401
    for path in ("/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui-bundle.js"):
        assert httpx.get(f"{running_api.url}{path}", timeout=10).status_code == 200, path


def test_the_running_api_logs_no_line_per_request(running_api: RunningApi) -> None:
    """uvicorn's access log stays at WARNING (runtime.logs.configure) unless at debug level."""
    for _ in range(3):
        assert httpx.get(f"{running_api.url}/healthz", timeout=10).status_code == 200
    log = running_api.log.read_text()
    assert "event=api_started" in log
    assert "/healthz" not in log, log[-2000:]


@needs_chromium
def test_swagger_ui_lists_every_operation_without_internet(running_api: RunningApi) -> None:
    expected = operation_ids(running_api.spec)
    assert len(expected) > 10

    page = browser.render(f"{running_api.url}/docs")

    missing = expected - swagger_listed(page.dom)
    assert not missing, f"Swagger UI does not list {sorted(missing)}; log:\n{page.problems()}"
    assert "GramLink API" in page.dom


@needs_chromium
def test_redoc_lists_every_operation_without_internet(running_api: RunningApi) -> None:
    expected = operation_ids(running_api.spec)

    page = browser.render(f"{running_api.url}/redoc")

    missing = expected - redoc_listed(page.dom)
    assert not missing, f"ReDoc does not list {sorted(missing)}; log:\n{page.problems()}"


@pytest.fixture
def cdn_docs() -> Iterator[str]:
    """FastAPI's default docs pages, which load Swagger UI and ReDoc from a CDN."""
    app = FastAPI(title="CDN docs")

    @app.get("/v1/things", summary="List the things")
    def things() -> list[str]:
        return []

    sock = bound_socket()  # bound before the server runs: no port race
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "CDN docs server")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@needs_chromium
def test_the_check_fails_for_pages_that_load_their_scripts_from_a_cdn(cdn_docs: str) -> None:
    assert "cdn.jsdelivr.net" in httpx.get(f"{cdn_docs}/docs", timeout=10).text

    swagger = browser.render(f"{cdn_docs}/docs")
    redoc = browser.render(f"{cdn_docs}/redoc")

    assert swagger_listed(swagger.dom) == set()
    assert "SwaggerUIBundle is not defined" in swagger.log
    assert redoc_listed(redoc.dom) == set()
    assert "List the things" not in redoc.dom
