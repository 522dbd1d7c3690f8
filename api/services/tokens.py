"""API tokens: a high-entropy secret shown once; only its SHA-256 is stored.

A token is never deleted: revoking it keeps the row (who held it, since when),
so the audit log's ``token:<name>`` actors stay explained.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import ApiToken
from api.errors import Conflict, NotFound
from api.schemas import Role
from api.services.audit import record, snapshot

FIELDS = ("id", "name", "role", "revoked")

TOKEN_PREFIX = "glt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, role: Role, name: str) -> str:
    """Store a new token's hash and return the token (the only time it is visible)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role.value, token_hash=hash_token(token)))
    return token


def lookup(session: Session, token: str) -> ApiToken | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked:
        return None
    return row


def listing(session: Session, *, limit: int, offset: int) -> tuple[list[ApiToken], int]:
    total = session.scalar(select(func.count()).select_from(ApiToken)) or 0
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id).limit(limit).offset(offset))
    return list(rows), total


def revoke(session: Session, actor: str, token_id: int) -> ApiToken:
    """Refuse the token from now on (its next request gets a 401)."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    if row.revoked:
        raise Conflict(f"token {token_id} is revoked already")
    before = snapshot(row, FIELDS)
    row.revoked = True
    session.flush()
    record(session, actor, "token.revoke", "token", str(token_id), before, snapshot(row, FIELDS))
    return row
