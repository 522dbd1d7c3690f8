"""Dependencies of the routes: the process's components, a DB session, the caller's role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.device_link import DeviceLink
from api.errors import BrokerUnavailable, Forbidden, Unauthorized
from api.schemas import MAX_ROW_ID, Role
from api.services.provisioning import Provisioner
from api.services.tokens import lookup
from api.settings import ApiSettings
from api.telemetry import TelemetryReader


@dataclass
class Components:
    """Built once by the lifespan (composition root), closed in reverse order."""

    settings: ApiSettings
    sessions: sessionmaker[Session]
    provisioner: Provisioner
    telemetry: TelemetryReader
    devices: DeviceLink | None = None  # commands and twins (with presence or campaigns)

    def device_link(self) -> DeviceLink:
        if self.devices is None:
            raise BrokerUnavailable(
                "commands and twins need the broker link (presence and campaigns are off)"
            )
        return self.devices


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role

    @property
    def label(self) -> str:
        return f"token:{self.name}"


def components(request: Request) -> Components:
    found: Components = request.app.state.components
    return found


Parts = Annotated[Components, Depends(components)]


def db_session(parts: Parts) -> Iterator[Session]:
    """A session per request; routes commit explicitly, anything else is rolled back."""
    session = parts.sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


DB = Annotated[Session, Depends(db_session)]
# a path's integer row id: one past the column's range is a 422, not an overflow
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
_bearer = HTTPBearer(auto_error=False, description="an API token from `gramlink api create-token`")


def actor(
    session: DB,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    token = lookup(session, credentials.credentials)
    if token is None:
        raise Unauthorized("unknown or revoked token")
    return Actor(token.name, Role(token.role))


def require(*roles: Role) -> Callable[[Actor], Actor]:
    def check(who: Annotated[Actor, Depends(actor)]) -> Actor:
        if who.role not in roles:
            raise Forbidden(f"role {who.role.value} may not do this")
        return who

    return check


Reader = Annotated[Actor, Depends(require(Role.ADMIN, Role.TECHNICIAN, Role.VIEWER))]
Technician = Annotated[Actor, Depends(require(Role.ADMIN, Role.TECHNICIAN))]
Admin = Annotated[Actor, Depends(require(Role.ADMIN))]


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


def paging(
    parts: Parts,
    limit: Annotated[int, Query(ge=1, le=10_000, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Paging:
    return Paging(min(limit, parts.settings.page_max), offset)


PageArgs = Annotated[Paging, Depends(paging)]
