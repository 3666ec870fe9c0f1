"""Sessions and pings over a primary engine and an optional read replica.

:class:`Database` (sync) and :class:`AsyncDatabase` (asyncio) are twins; the
routing, error translation and messages live once in :class:`_DatabaseBase`.
A session commits when its block succeeds, rolls back when it raises, and is
always closed. SQLAlchemy and driver errors leave it as
:class:`~dtpyfw.core.errors.IntegrityError` or
:class:`~dtpyfw.core.errors.DatabaseError` (see :mod:`dtpyfw.db._errors`),
chained to the original; any other exception passes through unchanged.

Sessions use ``expire_on_commit=False``: objects stay readable after the block
that loaded them, and an async session never reloads attributes implicitly.

The engines belong to the caller (``DatabaseContainer`` creates and disposes
them); a database object only borrows them.
"""

from __future__ import annotations

__all__ = ["AsyncDatabase", "Database", "acreate_all", "create_all"]

import asyncio
import contextlib
import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

from dtpyfw.core.errors import DatabaseError
from dtpyfw.db._errors import translate_error

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

_EngineT = TypeVar("_EngineT", "Engine", "AsyncEngine")

_log = logging.getLogger("dtpyfw.db")


class _DatabaseBase(Generic[_EngineT]):
    """Engine routing, error translation and ping messages shared by both twins."""

    def __init__(self, engine: _EngineT, replica_engine: _EngineT | None = None) -> None:
        self._engine: _EngineT = engine
        self._replica_engine: _EngineT | None = replica_engine

    @property
    def engine(self) -> _EngineT:
        """The primary engine: every write, and reads unless ``readonly=True``."""
        return self._engine

    @property
    def replica_engine(self) -> _EngineT | None:
        """The read replica's engine, or None when no replica is configured."""
        return self._replica_engine

    def __repr__(self) -> str:
        # Engine reprs mask the password.
        name = type(self).__name__
        return f"{name}(engine={self._engine!r}, replica_engine={self._replica_engine!r})"

    def _engine_for(self, *, readonly: bool) -> _EngineT:
        if readonly and self._replica_engine is not None:
            return self._replica_engine
        return self._engine

    def _pinged(self) -> list[tuple[str, _EngineT]]:
        engines = [("primary", self._engine)]
        if self._replica_engine is not None:
            engines.append(("replica", self._replica_engine))
        return engines

    @staticmethod
    def _raise_translated(exc: BaseException) -> NoReturn:
        failure = translate_error(exc)
        if failure is exc:
            raise exc
        raise failure from exc

    @staticmethod
    def _ping_timed_out(role: str, timeout: float) -> DatabaseError:
        return DatabaseError(f"{role} database did not answer SELECT 1 within {timeout:g}s")

    @staticmethod
    def _ping_failed(role: str, exc: BaseException) -> DatabaseError:
        failure = translate_error(exc)
        reason = str(failure) if failure is not exc else f"{type(exc).__name__}: {exc}"
        return DatabaseError(f"{role} database ping failed: {reason}")


class Database(_DatabaseBase["Engine"]):
    """Sync sessions on ``engine``; ``session(readonly=True)`` reads from ``replica_engine``."""

    def __init__(self, engine: Engine, replica_engine: Engine | None = None) -> None:
        super().__init__(engine, replica_engine)
        from sqlalchemy.orm import Session

        self._session_class = Session

    def session(self, readonly: bool = False) -> contextlib.AbstractContextManager[Session]:
        """A session that commits on success, rolls back on an exception, and always closes."""
        return _SessionBlock(self, self._open(readonly))

    def _open(self, readonly: bool) -> Session:
        return self._session_class(bind=self._engine_for(readonly=readonly), expire_on_commit=False)

    def _end(self, session: Session, exc: BaseException | None) -> None:
        """Commit (``exc`` None) or roll back, then close; raise the translated failure.

        Returns normally when ``exc`` is not translated: the caller lets it propagate.
        """
        try:
            if exc is None:
                try:
                    session.commit()
                except BaseException as error:
                    self._rollback(session)
                    self._raise_translated(error)
            else:
                self._rollback(session)
                translated = translate_error(exc)
                if translated is not exc:
                    raise translated from exc
        finally:
            session.close()

    @staticmethod
    def _rollback(session: Session) -> None:
        try:
            session.rollback()
        except Exception:
            _log.warning("database rollback failed", exc_info=True)

    def ping(self, timeout: float) -> None:
        """Run ``SELECT 1`` on every engine within ``timeout`` seconds, or raise DatabaseError.

        The ping runs in a daemon thread, so a database that hangs on connect
        cannot hold the caller beyond ``timeout``.
        """
        from sqlalchemy import text

        current = ["primary"]
        errors: list[BaseException] = []

        def run() -> None:
            try:
                for role, engine in self._pinged():
                    current[0] = role
                    with engine.connect() as connection:
                        connection.execute(text("SELECT 1"))
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)

        thread = threading.Thread(target=run, name="dtpyfw-db-ping", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise self._ping_timed_out(current[0], timeout)
        if errors:
            raise self._ping_failed(current[0], errors[0]) from errors[0]


class AsyncDatabase(_DatabaseBase["AsyncEngine"]):
    """Async twin of :class:`Database`: ``async with database.session() as session``."""

    def __init__(self, engine: AsyncEngine, replica_engine: AsyncEngine | None = None) -> None:
        super().__init__(engine, replica_engine)
        from sqlalchemy.ext.asyncio import AsyncSession

        self._session_class = AsyncSession

    def session(
        self, readonly: bool = False
    ) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A session that commits on success, rolls back on an exception, and always closes."""
        return _AsyncSessionBlock(self, self._open(readonly))

    def _open(self, readonly: bool) -> AsyncSession:
        return self._session_class(bind=self._engine_for(readonly=readonly), expire_on_commit=False)

    async def _end(self, session: AsyncSession, exc: BaseException | None) -> None:
        """Async twin of :meth:`Database._end`."""
        try:
            if exc is None:
                try:
                    await session.commit()
                except BaseException as error:
                    await self._rollback(session)
                    self._raise_translated(error)
            else:
                await self._rollback(session)
                translated = translate_error(exc)
                if translated is not exc:
                    raise translated from exc
        finally:
            await session.close()

    @staticmethod
    async def _rollback(session: AsyncSession) -> None:
        try:
            await session.rollback()
        except Exception:
            _log.warning("database rollback failed", exc_info=True)

    async def aping(self, timeout: float) -> None:
        """Run ``SELECT 1`` on every engine within ``timeout`` seconds, or raise DatabaseError."""
        from sqlalchemy import text

        role = "primary"
        try:
            async with asyncio.timeout(timeout):
                for role, engine in self._pinged():  # noqa: B007 - role names the failure
                    async with engine.connect() as connection:
                        await connection.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise self._ping_timed_out(role, timeout) from exc
        except Exception as exc:
            raise self._ping_failed(role, exc) from exc


class _SessionBlock:
    """``with database.session() as session``: one session, ended by ``Database._end``.

    A class rather than ``@contextmanager``: sessions are opened once per request,
    and the generator machinery would cost more than the rest of the block.
    """

    __slots__ = ("_database", "_session")

    def __init__(self, database: Database, session: Session) -> None:
        self._database = database
        self._session = session

    def __enter__(self) -> Session:
        return self._session

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._database._end(self._session, exc)


class _AsyncSessionBlock:
    """Async twin of :class:`_SessionBlock`."""

    __slots__ = ("_database", "_session")

    def __init__(self, database: AsyncDatabase, session: AsyncSession) -> None:
        self._database = database
        self._session = session

    async def __aenter__(self) -> AsyncSession:
        return self._session

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._database._end(self._session, exc)


def create_all(database: Database) -> None:
    """Create every table of ``ModelBase.metadata`` that does not exist yet (on the primary)."""
    from dtpyfw.db._models import ModelBase

    try:
        with database.engine.begin() as connection:
            ModelBase.metadata.create_all(connection)
    except Exception as exc:
        _DatabaseBase._raise_translated(exc)


async def acreate_all(database: AsyncDatabase) -> None:
    """Async twin of :func:`create_all`."""
    from dtpyfw.db._models import ModelBase

    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(ModelBase.metadata.create_all)
    except Exception as exc:
        _DatabaseBase._raise_translated(exc)
