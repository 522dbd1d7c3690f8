"""``/v1/tokens``: who holds API access, and revoking it (admins only).

Tokens are created on the API host with ``gramlink api create-token --role R``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import DB, Admin, PageArgs
from api.schemas import Page, TokenPublic
from api.services import tokens

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
TokenId = Annotated[int, Path(ge=1, le=2**31)]


@router.get("", summary="API tokens (names, roles, revoked), never their secrets")
def list_tokens(session: DB, _who: Admin, page: PageArgs) -> Page[TokenPublic]:
    rows, total = tokens.listing(session, limit=page.limit, offset=page.offset)
    items = [TokenPublic.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/{token_id}/revoke", summary="Revoke a token: its next request gets a 401")
def revoke_token(session: DB, who: Admin, token_id: TokenId) -> TokenPublic:
    row = tokens.revoke(session, who.label, token_id)
    session.commit()
    return TokenPublic.model_validate(row)
