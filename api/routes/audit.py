"""``/v1/audit``: every mutation (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import DB, Admin, PageArgs
from api.schemas import AuditPublic, Id, Page
from api.services.audit import list_entries

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", summary="The audit log, newest first")
def audit(
    session: DB, _who: Admin, page: PageArgs, entity_id: Id | None = None
) -> Page[AuditPublic]:
    rows, total = list_entries(session, entity_id=entity_id, limit=page.limit, offset=page.offset)
    return Page(
        items=[AuditPublic.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
