"""Log in with a password, refresh, log out, and who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dtpyfw.api import CurrentUser, rate_limit
from dtpyfw.container import Provide, ServiceContainer, inject
from dtpyfw.security import InvalidCredentials, PasswordHasher, TokenPair, TokenService
from examples.notes_service.models import User

auth_router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=8192)


class MeOut(BaseModel):
    subject: str
    username: str | None
    scopes: list[str]


@auth_router.post(
    "/login",
    response_model=TokenPair,
    dependencies=[Depends(rate_limit(10, 60, name="login"))],
)
@inject
async def login(
    payload: LoginIn,
    session: AsyncSession = Depends(Provide[ServiceContainer.db.async_session]),
    hasher: PasswordHasher = Depends(Provide[ServiceContainer.security.password_hasher]),
    tokens: TokenService = Depends(Provide[ServiceContainer.security.token_service]),
) -> TokenPair:
    """A token pair for a correct user name and password; 401 otherwise (same answer for both)."""
    user = await session.scalar(select(User).where(User.username == payload.username))
    # verify(password, None) spends the same bcrypt time: unknown users do not answer faster.
    valid = await hasher.averify(payload.password, user.password_hash if user else None)
    if user is None or not valid:
        raise InvalidCredentials("wrong user name or password")
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = await hasher.ahash(payload.password)  # committed with the request
    return await tokens.aissue_pair(
        str(user.id), scopes=user.scopes.split(), claims={"name": user.username}
    )


@auth_router.post("/refresh", response_model=TokenPair)
@inject
async def refresh(
    payload: RefreshIn,
    tokens: TokenService = Depends(Provide[ServiceContainer.security.token_service]),
) -> TokenPair:
    """A new pair; the refresh token presented is spent, and presenting it again logs out."""
    return await tokens.arefresh(payload.refresh_token)


@auth_router.post("/logout", status_code=204)
@inject
async def logout(
    payload: RefreshIn,
    tokens: TokenService = Depends(Provide[ServiceContainer.security.token_service]),
) -> None:
    """End the session of this refresh token, and the access tokens it minted."""
    await tokens.arevoke(payload.refresh_token)


@auth_router.get("/me", response_model=MeOut)
async def me(user: CurrentUser) -> MeOut:
    """The caller, from the bearer token."""
    name: Any = user.claims.get("name")
    return MeOut(
        subject=user.subject,
        username=name if isinstance(name, str) else None,
        scopes=sorted(user.scopes),
    )
