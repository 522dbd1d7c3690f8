"""API tokens: listed without secrets, revoked at once (HTTP and CLI), audited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from api.schemas import Role
from tests.api.conftest import MASTER, Api, ApiFactory

ROOT = Path(__file__).resolve().parents[2]


def _id_of(api: Api, name: str) -> int:
    listed = api.client.get("/v1/tokens", params={"limit": 500}, headers=api.headers()).json()
    return next(t["id"] for t in listed["items"] if t["name"] == name)


def test_tokens_are_listed_without_their_secrets(api: Api) -> None:
    answer = api.client.get("/v1/tokens", headers=api.headers())
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert {t["role"] for t in items} == {"admin", "technician", "viewer"}
    assert all(set(t) == {"id", "name", "role", "created_at", "revoked"} for t in items)
    for token in api.tokens.values():
        assert token not in answer.text


def test_a_revoked_token_is_refused_at_once_and_the_revocation_audited(api: Api) -> None:
    viewer = api.headers(Role.VIEWER)
    assert api.client.get("/v1/centres", headers=viewer).status_code == 200
    token_id = _id_of(api, "test-viewer")
    answer = api.client.post(f"/v1/tokens/{token_id}/revoke", headers=api.headers())
    assert answer.status_code == 200
    assert answer.json()["revoked"] is True
    refused = api.client.get("/v1/centres", headers=viewer)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    again = api.client.post(f"/v1/tokens/{token_id}/revoke", headers=api.headers())
    assert again.status_code == 409
    missing = api.client.post("/v1/tokens/999999/revoke", headers=api.headers())
    assert missing.status_code == 404
    audit = api.client.get("/v1/audit", params={"entity_id": str(token_id)}, headers=api.headers())
    entry = audit.json()["items"][0]
    assert entry["action"] == "token.revoke"
    assert (entry["before"]["revoked"], entry["after"]["revoked"]) == (False, True)


def test_the_cli_lists_and_revokes_tokens(api_factory: ApiFactory, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    api = api_factory(db_url)
    token_id = _id_of(api, "test-technician")
    env = {**os.environ, "GRAMLINK_API_MASTER_SECRET": MASTER, "GRAMLINK_API_DB_URL": db_url}

    def gramlink(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gramlink", "api", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)

    listed = gramlink("list-tokens")
    assert listed.returncode == 0, listed.stderr
    assert "test-technician" in listed.stdout
    revoked = gramlink("revoke-token", "--id", str(token_id))
    assert revoked.returncode == 0, revoked.stderr
    assert api.client.get("/v1/centres", headers=api.headers(Role.TECHNICIAN)).status_code == 401
    twice = gramlink("revoke-token", "--id", str(token_id))
    assert twice.returncode == 2
    assert twice.stderr.strip() == f"error: token {token_id} is revoked already"
