"""A stand-in for Grafana's HTTP API (the endpoints ``dashboards push`` uses), answering
as Grafana's API reference documents, in a thread on a free loopback port; it
records every request.

Tokens: ``editor-token`` may do everything, ``viewer-token`` may read only (403 on
writes, as Grafana answers a Viewer), anything else is 401.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EDITOR, VIEWER = "editor-token", "viewer-token"


@dataclass
class Request:
    method: str
    path: str
    body: Any
    authorization: str


@dataclass
class Grafana:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    someone_saves_before_next_write: bool = False
    next_id: int = 1

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    # --- the API -------------------------------------------------------------------------
    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.removeprefix("/api/").split("/")
        if parts[:2] == ["datasources", "uid"] and method == "GET":
            ds = self.datasources.get(parts[2])
            if ds is None:
                return 404, {"message": "Data source not found"}
            public = {k: v for k, v in ds.items() if k != "secureJsonData"}
            public["secureJsonFields"] = {k: True for k in ds.get("secureJsonData", {})}
            return 200, public
        if parts == ["datasources"] and method == "POST":
            if any(d["name"] == body["name"] for d in self.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            ds = {**body, "id": self._id(), "orgId": 1, "version": 1, "readOnly": False}
            self.datasources[body["uid"]] = ds
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added"}
        if parts[:2] == ["datasources", "uid"] and method == "PUT":
            old = self.datasources[parts[2]]
            ds = {**old, **body, "version": old["version"] + 1}
            ds["secureJsonData"] = {
                **old.get("secureJsonData", {}),
                **body.get("secureJsonData", {}),
            }
            self.datasources[parts[2]] = ds
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource updated"}
        if parts[0] == "folders" and len(parts) == 2 and method == "GET":
            folder = self.folders.get(parts[1])
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if parts == ["folders"] and method == "POST":
            uid = body["uid"]
            folder = {
                "id": self._id(),
                "uid": uid,
                "title": body["title"],
                "version": 1,
                "url": f"/dashboards/f/{uid}/",
            }
            self.folders[uid] = folder
            return 200, folder
        if parts[:2] == ["dashboards", "uid"] and method == "GET":
            stored = self.dashboards.get(parts[2])
            if stored is None:
                return 404, {"message": "Dashboard not found"}
            return 200, stored
        if parts == ["dashboards", "db"] and method == "POST":
            return self._save(body)
        return 404, {"message": "Not found"}

    def _save(self, body: dict[str, Any]) -> tuple[int, Any]:
        dashboard = dict(body["dashboard"])
        uid = dashboard["uid"]
        stored = self.dashboards.get(uid)
        if stored is not None and self.someone_saves_before_next_write:
            stored["dashboard"]["version"] += 1
            stored["meta"]["version"] += 1
            self.someone_saves_before_next_write = False
        stale = stored is not None and dashboard.get("version") != stored["dashboard"]["version"]
        if stale and not body.get("overwrite"):
            return 412, {
                "message": "The dashboard has been changed by someone else",
                "status": "version-mismatch",
            }
        version = 1 if stored is None else stored["dashboard"]["version"] + 1
        dash_id = self._id() if stored is None else stored["dashboard"]["id"]
        dashboard.update(id=dash_id, version=version)
        folder = body.get("folderUid")
        self.dashboards[uid] = {
            "dashboard": dashboard,
            "meta": {"folderUid": folder, "version": version, "slug": uid, "url": f"/d/{uid}"},
        }
        return 200, {
            "id": dash_id,
            "uid": uid,
            "url": f"/d/{uid}/{uid}",
            "status": "success",
            "version": version,
            "slug": uid,
        }


class FakeGrafanaServer:
    def __init__(self) -> None:
        self.grafana = Grafana()
        grafana = self.grafana

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                auth = self.headers.get("Authorization", "")
                grafana.requests.append(Request(self.command, self.path, body, auth))
                token = auth.removeprefix("Bearer ")
                if token not in (EDITOR, VIEWER):
                    status, answer = 401, {"message": "invalid API key"}
                elif token == VIEWER and self.command != "GET":
                    status, answer = (
                        403,
                        {"message": "You'll need additional permissions to perform this action."},
                    )
                else:
                    status, answer = grafana.answer(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafanaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
