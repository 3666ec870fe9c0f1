"""Request scopes never leave a transaction open, and constraint violations map to IntegrityError.

Documented behaviour (docs/db.md, "Errors"): a unique, foreign-key, check or
not-null violation raises :class:`~dtpyfw.core.errors.IntegrityError`, a
:class:`~dtpyfw.core.errors.DatabaseError` answered with HTTP 409.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import String, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from dtpyfw.core.errors import DatabaseError, IntegrityError
from dtpyfw.core.scope import ascope, scope
from dtpyfw.db import DatabaseContainer, DatabaseSettings, ModelBase, Repository

APP = "dtpyfw-scope-test"


class Member(ModelBase):
    """A row with a unique email."""

    __tablename__ = "rel_db_members"
    email: Mapped[str] = mapped_column(String(100), unique=True)


class RequestFailedError(Exception):
    """The application error that ends a request."""


@pytest.fixture
def container(postgres_url: str) -> Iterator[Any]:
    """A DatabaseContainer whose connections carry an application_name we can find."""
    settings = DatabaseSettings(url=f"{postgres_url}?application_name={APP}", pool_size=2)
    container: Any = DatabaseContainer(settings=settings)
    with container.engine().begin() as connection:
        ModelBase.metadata.create_all(connection, tables=[Member.__table__])
    yield container
    container.shutdown_resources()


@pytest.fixture
async def acontainer(container: Any) -> AsyncIterator[Any]:
    """The same container, shut down with its async engine too."""
    yield container
    await container.shutdown_resources()


def _states(postgres_url: str) -> list[str]:
    """pg_stat_activity states of our connections (read over a separate connection)."""
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = %s", (APP,)
        ).fetchall()
    return sorted(row[0] for row in rows)


def test_an_exception_in_a_scope_leaves_no_open_transaction(
    container: Any, postgres_url: str
) -> None:
    """Inside the scope the connection is idle in transaction; after the error it is idle."""

    def request() -> None:
        with scope():
            session: Session = container.session()
            session.add(Member(email="lost@example.com"))
            session.flush()
            assert "idle in transaction" in _states(postgres_url)
            raise RequestFailedError

    with pytest.raises(RequestFailedError):
        request()
    assert set(_states(postgres_url)) == {"idle"}
    with scope():
        assert (
            container.session().execute(text("SELECT count(*) FROM rel_db_members")).scalar_one()
            == 0
        )


def test_a_failed_statement_in_a_scope_is_rolled_back(container: Any, postgres_url: str) -> None:
    """An aborted transaction (a statement error) is rolled back when the scope ends."""

    def request() -> None:
        with scope():
            session: Session = container.session()
            try:
                session.execute(text("SELECT 1/0"))
            except Exception:
                assert "idle in transaction (aborted)" in _states(postgres_url)
                raise

    with pytest.raises(DatabaseError, match="division by zero"):
        request()
    assert set(_states(postgres_url)) == {"idle"}


async def test_an_exception_in_an_async_scope_leaves_no_open_transaction(
    acontainer: Any, postgres_url: str
) -> None:
    """The async twin: the scope's exception rolls back and returns a clean connection."""

    async def request() -> None:
        async with ascope():
            session: AsyncSession = await acontainer.async_session()
            session.add(Member(email="lost@example.com"))
            await session.flush()
            assert "idle in transaction" in _states(postgres_url)
            raise RequestFailedError

    with pytest.raises(RequestFailedError):
        await request()
    assert set(_states(postgres_url)) == {"idle"}


def test_unique_violation_maps_to_integrity_error(container: Any, postgres_url: str) -> None:
    """A duplicate in a request raises IntegrityError (409), rolls back, leaves no transaction."""
    with scope():
        Repository(Member, container.session()).create(email="taken@example.com")

    def duplicate() -> None:
        with scope():
            Repository(Member, container.session()).create(email="taken@example.com")

    with pytest.raises(IntegrityError, match="uq_rel_db_members_email") as info:
        duplicate()
    assert isinstance(info.value, DatabaseError)
    assert info.value.http_status == 409
    assert isinstance(info.value.__cause__.orig, psycopg.errors.UniqueViolation)  # type: ignore[union-attr]
    assert "taken@example.com" not in str(info.value)
    assert set(_states(postgres_url)) == {"idle"}


async def test_unique_violation_on_flush_at_scope_end_maps_too(
    acontainer: Any, postgres_url: str
) -> None:
    """A duplicate found only by the commit at the end of an async scope is IntegrityError too."""

    async def request() -> None:
        async with ascope():
            session: AsyncSession = await acontainer.async_session()
            session.add_all([Member(email="twice@example.com"), Member(email="twice@example.com")])

    with pytest.raises(IntegrityError):
        await request()
    assert set(_states(postgres_url)) == {"idle"}
