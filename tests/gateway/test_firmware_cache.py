"""The gateway's firmware cache: verified copies, bounded by its budget, served with Range."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from contract.firmware import local_path
from contract.messages import Command
from gateway.firmware_cache import CacheError, FirmwareCache
from gateway.firmware_server import FirmwareServer
from gateway.ota_rewrite import OtaRewrite

MB = 1024 * 1024


class Origin:
    """The API's role: files by path, every GET counted, Basic login recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gets: list[tuple[str, str | None]] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                origin.gets.append((self.path, self.headers.get("Authorization")))
                body = origin.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, name: str, body: bytes) -> tuple[str, str]:
        self.files[f"/{name}"] = body
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}", hashlib.sha256(
            body
        ).hexdigest()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_one_fetch_for_many_devices_and_range_answers(origin: Origin, tmp_path: Path) -> None:
    body = os.urandom(MB)
    url, digest = origin.add("a.bin", body)
    cache = FirmwareCache(tmp_path, 4 * MB, ("c1/c1-gw", "pw"))
    server = FirmwareServer(cache, "127.0.0.1", 0)
    server.start()
    try:
        rewrite = OtaRewrite(cache, f"http://127.0.0.1:{server.port}")
        command = Command(
            id="ota-1", name="ota", args={"url": url, "sha256": digest, "version": "2"}
        )
        relayed = Command.model_validate_json(rewrite(command, command.model_dump_json().encode()))
        assert relayed.args["url"] == f"http://127.0.0.1:{server.port}{local_path(digest)}"
        assert relayed.id == command.id and relayed.args["sha256"] == digest
        for _ in range(5):
            assert httpx.get(str(relayed.args["url"]), timeout=10).content == body
        tail = httpx.get(str(relayed.args["url"]), headers={"Range": "bytes=1000-"}, timeout=10)
        assert tail.status_code == 206 and tail.content == body[1000:]
    finally:
        server.stop()
    assert len(origin.gets) == 1  # one download over the uplink
    assert origin.gets[0][1] is not None and origin.gets[0][1].startswith("Basic ")
    assert cache.fetched == 1


def test_a_file_that_does_not_match_is_not_kept(origin: Origin, tmp_path: Path) -> None:
    url, _ = origin.add("b.bin", os.urandom(2000))
    wrong = hashlib.sha256(b"something else").hexdigest()
    cache = FirmwareCache(tmp_path, 4 * MB, None)
    cache.remember(wrong, url)
    with pytest.raises(CacheError) as caught:
        cache.get(wrong)
    assert caught.value.status == 502
    assert list(tmp_path.glob("*.bin")) == []


def test_the_cache_keeps_to_its_budget_least_recently_used_first(
    origin: Origin, tmp_path: Path
) -> None:
    cache = FirmwareCache(tmp_path, int(2.5 * MB), None)
    digests = []
    for name in ("x", "y", "z"):
        url, digest = origin.add(name, os.urandom(MB))
        cache.remember(digest, url)
        cache.get(digest)
        digests.append(digest)
    kept = {p.stem for p in tmp_path.glob("*.bin")}
    assert kept == {digests[1], digests[2]}
    assert sum(p.stat().st_size for p in tmp_path.glob("*.bin")) <= 2.5 * MB
