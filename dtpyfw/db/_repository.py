"""Repositories: the everyday queries of one model, on a session you give them.

:class:`Repository` (sync) and :class:`AsyncRepository` (asyncio) are twins:
every statement is built once, in :class:`_Statements`, and each twin only
executes it. A repository never commits; the session's owner does (the
request scope, or ``Database.session()``)::

    with database.session() as session:
        notes = Repository(Note, session)
        note = notes.create(title="hello", size=5)
        notes.update(note.id, {"title": "hi"}, expected_version=note.version)

Rules every method follows:

* rows of a :class:`~dtpyfw.db.SoftDeleteMixin` model with ``deleted_at`` set
  are invisible unless ``include_deleted=True``; ``delete`` marks them
  (``hard=True`` removes them);
* an id may be given as its string form; one that does not convert raises
  :class:`~dtpyfw.core.errors.FilterError`;
* for a :class:`~dtpyfw.db.VersionedMixin` model, ``update`` and ``delete``
  increase ``version``, and with ``expected_version`` they raise
  :class:`~dtpyfw.db.StaleVersionError` when the row has moved on;
* SQLAlchemy and driver errors leave as the dtpyfw tree (``IntegrityError``
  for a violated constraint), chained to the original.
"""

from __future__ import annotations

__all__ = ["AsyncRepository", "Repository"]

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

from sqlalchemy import ColumnElement, Delete, Select, Update, delete, func, inspect, select, update
from sqlalchemy.orm import Mapper

from dtpyfw.core.errors import DatabaseError
from dtpyfw.db._coerce import coerce
from dtpyfw.db._errors import StaleVersionError, translate_error
from dtpyfw.db._models import ServerNow, SoftDeleteMixin
from dtpyfw.db._pagination import CursorPage, Keyset, Page, check_window, parse_sort
from dtpyfw.db._upsert import UpsertResult, abulk_upsert, bulk_upsert

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

ModelT = TypeVar("ModelT")
_ID_CHUNK = 1000  # ids per IN (...) of get_many


class _Statements(Generic[ModelT]):
    """Every statement a repository runs, built without touching a session."""

    def __init__(self, model: type[ModelT]) -> None:
        mapper: Mapper[ModelT] = inspect(model)
        if len(mapper.primary_key) != 1:
            raise ValueError(f"{model.__name__}: repositories need a single-column primary key")
        self.model = model
        self.name = model.__name__
        self.pk_column = mapper.primary_key[0]
        self.pk_name = mapper.get_property_by_column(self.pk_column).key
        self.pk: Any = getattr(model, self.pk_name)
        self.soft = isinstance(model, type) and issubclass(model, SoftDeleteMixin)
        version_column = mapper.version_id_col
        self.version: Any = (
            None
            if version_column is None
            else getattr(model, mapper.get_property_by_column(version_column).key)
        )
        self.columns = frozenset(attr.key for attr in mapper.column_attrs)
        protected = {self.pk_name}
        if self.version is not None:
            protected.add(self.version.key)
        self.writable = self.columns - protected

    # -- reading ----------------------------------------------------------------------
    def ident(self, value: Any) -> Any:
        return coerce(value, self.pk, f"{self.name} id")

    def visible(self, include_deleted: bool) -> list[ColumnElement[bool]]:
        if self.soft and not include_deleted:
            return [cast(Any, self.model).deleted_at.is_(None)]
        return []

    def base(self, stmt: Select[Any] | None) -> Select[Any]:
        return select(self.model).where(*self.visible(False)) if stmt is None else stmt

    def get(self, ident: Any, include_deleted: bool) -> Select[Any]:
        return select(self.model).where(self.pk == ident, *self.visible(include_deleted))

    def many(self, idents: Sequence[Any], include_deleted: bool) -> Select[Any]:
        return select(self.model).where(self.pk.in_(idents), *self.visible(include_deleted))

    def criteria(
        self, where: Iterable[ColumnElement[bool]], equal: Mapping[str, Any], include_deleted: bool
    ) -> list[ColumnElement[bool]]:
        self.check_columns(equal, self.columns, "filter by")
        return [
            *where,
            *(getattr(self.model, k) == v for k, v in equal.items()),
            *self.visible(include_deleted),
        ]

    def exists(self, criteria: list[ColumnElement[bool]]) -> Select[Any]:
        return select(select(self.pk).where(*criteria).exists())

    def count(self, criteria: list[ColumnElement[bool]]) -> Select[Any]:
        return select(func.count()).select_from(self.model).where(*criteria)

    def version_of(self, ident: Any) -> Select[Any]:
        return select(self.version).where(self.pk == ident, *self.visible(False))

    # -- writing ----------------------------------------------------------------------
    def values(self, values: Mapping[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
        merged = {**(values or {}), **more}
        self.check_columns(merged, self.writable, "update")
        return merged

    def update(self, ident: Any, values: dict[str, Any], expected: int | None) -> Update:
        criteria = [self.pk == ident, *self.visible(False), *self.expected(expected)]
        if self.version is not None:
            values = {**values, self.version.key: self.version + 1}
        return self.returning(update(self.model).where(*criteria).values(values))

    def soft_delete(self, ident: Any, expected: int | None) -> Update:
        model = cast(Any, self.model)
        values: dict[str, Any] = {"deleted_at": ServerNow()}
        if self.version is not None:
            values[self.version.key] = self.version + 1
        criteria = [self.pk == ident, model.deleted_at.is_(None), *self.expected(expected)]
        return self.returning(update(self.model).where(*criteria).values(values))

    def hard_delete(self, ident: Any, expected: int | None) -> Delete:
        return delete(self.model).where(self.pk == ident, *self.expected(expected))

    def returning(self, stmt: Update) -> Update:
        # The written row comes back whole, refreshing the object in the session.
        return stmt.returning(self.model).execution_options(populate_existing=True)

    def expected(self, expected: int | None) -> list[ColumnElement[bool]]:
        if expected is None:
            return []
        if self.version is None:
            raise ValueError(f"{self.name} has no version column: expected_version does not apply")
        return [self.version == expected]

    def insert_ignore(self, dialect: str, keys: dict[str, Any], defaults: dict[str, Any]) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        inserts: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
        insert = inserts.get(dialect)
        if insert is None:
            raise NotImplementedError(
                f"get_or_create supports postgresql and sqlite, not {dialect}"
            )
        values = {**defaults, **keys}
        if self.version is not None:
            values.setdefault(self.version.key, 1)
        stmt = insert(self.model).values(values).on_conflict_do_nothing(index_elements=list(keys))
        return stmt.returning(self.model)

    def lookup(self, keys: Mapping[str, Any]) -> Select[Any]:
        return select(self.model).where(*(getattr(self.model, k) == v for k, v in keys.items()))

    # -- pages ------------------------------------------------------------------------
    def ordered(self, stmt: Select[Any]) -> Select[Any]:
        # Offsets need a total order; a statement without one gets the primary key's.
        return stmt if stmt._order_by_clauses else stmt.order_by(self.pk)

    def count_of(self, stmt: Select[Any]) -> Select[Any]:
        inner = stmt.order_by(None).limit(None).offset(None).subquery()
        return select(func.count()).select_from(inner)

    def keyset(self, sort: str | Sequence[str] | None, secret: str | bytes | None) -> Keyset:
        keys = parse_sort(
            self.model,
            sort,
            allowed=self.columns.__contains__,
            allowed_names=lambda: ", ".join(sorted(self.columns)),
        )
        return Keyset(keys, secret)

    # -- checks -----------------------------------------------------------------------
    def check_columns(self, values: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"{self.name}: cannot {what} {', '.join(map(repr, unknown))}; "
                f"columns: {', '.join(sorted(allowed))}"
            )

    def stale(self, ident: Any, current: int, expected: int) -> StaleVersionError:
        return StaleVersionError(
            f"{self.name} {ident} is at version {current}, not {expected}: reload it and retry"
        )

    def lost_race(self, keys: Mapping[str, Any]) -> DatabaseError:
        return DatabaseError(
            f"get_or_create({', '.join(keys)}): the INSERT conflicted but no {self.name} matches; "
            "the conflict is on another unique constraint"
        )


class _RepositoryBase(Generic[ModelT]):
    __slots__ = ("_cursor_secret", "_s", "_session")

    def __init__(self, model: type[ModelT], cursor_secret: str | bytes | None) -> None:
        self._s = _Statements(model)
        self._cursor_secret = cursor_secret

    @property
    def model(self) -> type[ModelT]:
        """The model class this repository queries."""
        return self._s.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._s.name})"

    @staticmethod
    def _raise(exc: BaseException) -> NoReturn:
        failure = translate_error(exc)
        if failure is exc:
            raise exc
        raise failure from exc

    def _ordered_unique(self, ids: Iterable[Any]) -> list[Any]:
        return list(dict.fromkeys(self._s.ident(i) for i in ids))


class Repository(_RepositoryBase[ModelT]):
    """Queries of ``model`` on a sync ``session``; ``cursor_secret`` signs keyset cursors."""

    __slots__ = ()

    def __init__(
        self, model: type[ModelT], session: Session, *, cursor_secret: str | bytes | None = None
    ) -> None:
        super().__init__(model, cursor_secret)
        self._session = session

    @property
    def session(self) -> Session:
        """The session every query runs on."""
        return self._session

    def get(self, id: Any, *, include_deleted: bool = False) -> ModelT | None:
        """The row with this id, or None."""
        stmt = self._s.get(self._s.ident(id), include_deleted)
        return cast("ModelT | None", self._execute(stmt).scalars().one_or_none())

    def get_many(self, ids: Iterable[Any], *, include_deleted: bool = False) -> list[ModelT]:
        """The rows with these ids, in the order given; missing ids are left out."""
        wanted = self._ordered_unique(ids)
        found: dict[Any, ModelT] = {}
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            for row in self._execute(self._s.many(chunk, include_deleted)).scalars():
                found[getattr(row, self._s.pk_name)] = row
        return [found[i] for i in wanted if i in found]

    def exists(
        self, *where: ColumnElement[bool], include_deleted: bool = False, **equal: Any
    ) -> bool:
        """Whether a row matches: ``exists(Note.size > 3)`` or ``exists(title="x")``."""
        criteria = self._s.criteria(where, equal, include_deleted)
        return bool(self._execute(self._s.exists(criteria)).scalar())

    def count(
        self, *where: ColumnElement[bool], include_deleted: bool = False, **equal: Any
    ) -> int:
        """How many rows match (all visible rows without criteria)."""
        criteria = self._s.criteria(where, equal, include_deleted)
        return int(self._execute(self._s.count(criteria)).scalar_one())

    def create(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> ModelT:
        """A new row, flushed: its id and server-set columns are filled in."""
        row = self._s.model(**{**(values or {}), **more})
        self.session.add(row)
        try:
            self.session.flush()
        except Exception as exc:
            self._raise(exc)
        return row

    def update(
        self,
        id: Any,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        expected_version: int | None = None,
        **more: Any,
    ) -> ModelT | None:
        """Set the given columns of one row (a partial update); None when there is no such row.

        One ``UPDATE ... RETURNING`` statement; ``updated_at`` and ``version``
        follow. With ``expected_version`` the row must still be at that version,
        else :class:`StaleVersionError`.
        """
        ident = self._s.ident(id)
        changes = self._s.values(values, more)
        if not changes:
            row = self.get(ident)
            if row is not None and expected_version is not None:
                self._check_version(ident, expected_version)
            return row
        stmt = self._s.update(ident, changes, expected_version)
        row = self._execute(stmt).scalars().one_or_none()
        if row is None and expected_version is not None:
            self._check_version(ident, expected_version)
        return cast("ModelT | None", row)

    def delete(
        self,
        id: Any,
        *,
        hard: bool = False,
        expected_version: int | None = None,
    ) -> bool:
        """Soft-delete the row (a SoftDeleteMixin model) or remove it; False when not found."""
        ident = self._s.ident(id)
        if self._s.soft and not hard:
            rows = self._execute(self._s.soft_delete(ident, expected_version)).scalars().all()
            done = bool(rows)
        else:
            result = self._execute(self._s.hard_delete(ident, expected_version))
            done = cast(Any, result).rowcount > 0
        if not done and expected_version is not None:
            self._check_version(ident, expected_version)
        return done

    def get_or_create(
        self, defaults: Mapping[str, Any] | None = None, /, **keys: Any
    ) -> tuple[ModelT, bool]:
        """The row matching ``keys`` (a unique key), created with ``defaults`` if missing.

        Safe under concurrency: the INSERT is ``ON CONFLICT (keys) DO NOTHING``,
        then the row is read, so two callers racing get the same row and only
        one of them ``created=True``. A soft-deleted row counts as existing.
        """
        if not keys:
            raise ValueError("get_or_create needs the unique key columns as keyword arguments")
        self._s.check_columns(keys, self._s.columns, "look up by")
        self._s.check_columns(defaults or {}, self._s.writable, "set")
        row = self._execute(self._s.lookup(keys)).scalars().one_or_none()
        if row is not None:
            return row, False
        dialect = self.session.get_bind().dialect.name
        stmt = self._s.insert_ignore(dialect, keys, dict(defaults or {}))
        row = self._execute(stmt).scalars().one_or_none()
        if row is not None:
            return row, True
        row = self._execute(self._s.lookup(keys)).scalars().one_or_none()
        if row is None:
            raise self._s.lost_race(keys)
        return row, False

    def page(
        self,
        stmt: Select[Any] | None = None,
        *,
        limit: int,
        offset: int = 0,
        with_total: bool = False,
    ) -> Page[ModelT]:
        """One offset page of ``stmt`` (default: every visible row); ``total`` when asked."""
        limit, offset = check_window(limit, offset)
        base = self._s.ordered(self._s.base(stmt))
        items = list(self._execute(base.limit(limit).offset(offset)).scalars())
        total = None
        if with_total:
            if offset == 0 and len(items) < limit:
                total = len(items)
            else:
                total = int(self._execute(self._s.count_of(base)).scalar_one())
        return Page(items, limit, offset, total)

    def keyset_page(
        self,
        stmt: Select[Any] | None = None,
        *,
        sort: str | Sequence[str] | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> CursorPage[ModelT]:
        """One keyset page of ``stmt`` ordered by ``sort`` (then id), after ``cursor``.

        ``stmt``'s own ORDER BY is replaced. For a sort chosen by a user, pass
        ``spec.sort_keys(user_sort)`` so the spec checks it first.
        """
        limit, _ = check_window(limit)
        keyset = self._s.keyset(sort, self._cursor_secret)
        query = keyset.statement(self._s.base(stmt), cursor, limit)
        return keyset.page(list(self._execute(query).scalars()), limit)

    def upsert(self, rows: Iterable[Mapping[str, Any]], **options: Any) -> UpsertResult:
        """:func:`~dtpyfw.db.bulk_upsert` of ``rows`` into this model's table."""
        return bulk_upsert(self.session, self._s.model, rows, **options)

    def _check_version(self, ident: Any, expected: int) -> None:
        current = self._execute(self._s.version_of(ident)).scalar_one_or_none()
        if current is not None and current != expected:
            raise self._s.stale(ident, current, expected)

    def _execute(self, stmt: Any) -> Any:
        try:
            return self.session.execute(stmt)
        except Exception as exc:
            self._raise(exc)


class AsyncRepository(_RepositoryBase[ModelT]):
    """Async twin of :class:`Repository`, on an ``AsyncSession``."""

    __slots__ = ()

    def __init__(
        self,
        model: type[ModelT],
        session: AsyncSession,
        *,
        cursor_secret: str | bytes | None = None,
    ) -> None:
        super().__init__(model, cursor_secret)
        self._session = session

    @property
    def session(self) -> AsyncSession:
        """The session every query runs on."""
        return self._session

    async def get(self, id: Any, *, include_deleted: bool = False) -> ModelT | None:
        """The row with this id, or None."""
        stmt = self._s.get(self._s.ident(id), include_deleted)
        return cast("ModelT | None", (await self._execute(stmt)).scalars().one_or_none())

    async def get_many(self, ids: Iterable[Any], *, include_deleted: bool = False) -> list[ModelT]:
        """The rows with these ids, in the order given; missing ids are left out."""
        wanted = self._ordered_unique(ids)
        found: dict[Any, ModelT] = {}
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            for row in (await self._execute(self._s.many(chunk, include_deleted))).scalars():
                found[getattr(row, self._s.pk_name)] = row
        return [found[i] for i in wanted if i in found]

    async def exists(
        self, *where: ColumnElement[bool], include_deleted: bool = False, **equal: Any
    ) -> bool:
        """Whether a row matches: ``exists(Note.size > 3)`` or ``exists(title="x")``."""
        criteria = self._s.criteria(where, equal, include_deleted)
        return bool((await self._execute(self._s.exists(criteria))).scalar())

    async def count(
        self, *where: ColumnElement[bool], include_deleted: bool = False, **equal: Any
    ) -> int:
        """How many rows match (all visible rows without criteria)."""
        criteria = self._s.criteria(where, equal, include_deleted)
        return int((await self._execute(self._s.count(criteria))).scalar_one())

    async def create(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> ModelT:
        """A new row, flushed: its id and server-set columns are filled in."""
        row = self._s.model(**{**(values or {}), **more})
        self.session.add(row)
        try:
            await self.session.flush()
        except Exception as exc:
            self._raise(exc)
        return row

    async def update(
        self,
        id: Any,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        expected_version: int | None = None,
        **more: Any,
    ) -> ModelT | None:
        """Set the given columns of one row (a partial update); None when there is no such row."""
        ident = self._s.ident(id)
        changes = self._s.values(values, more)
        if not changes:
            row = await self.get(ident)
            if row is not None and expected_version is not None:
                await self._check_version(ident, expected_version)
            return row
        stmt = self._s.update(ident, changes, expected_version)
        row = (await self._execute(stmt)).scalars().one_or_none()
        if row is None and expected_version is not None:
            await self._check_version(ident, expected_version)
        return cast("ModelT | None", row)

    async def delete(
        self,
        id: Any,
        *,
        hard: bool = False,
        expected_version: int | None = None,
    ) -> bool:
        """Soft-delete the row (a SoftDeleteMixin model) or remove it; False when not found."""
        ident = self._s.ident(id)
        if self._s.soft and not hard:
            stmt = self._s.soft_delete(ident, expected_version)
            done = bool((await self._execute(stmt)).scalars().all())
        else:
            result = await self._execute(self._s.hard_delete(ident, expected_version))
            done = result.rowcount > 0
        if not done and expected_version is not None:
            await self._check_version(ident, expected_version)
        return done

    async def get_or_create(
        self, defaults: Mapping[str, Any] | None = None, /, **keys: Any
    ) -> tuple[ModelT, bool]:
        """The row matching ``keys`` (a unique key), created with ``defaults`` if missing."""
        if not keys:
            raise ValueError("get_or_create needs the unique key columns as keyword arguments")
        self._s.check_columns(keys, self._s.columns, "look up by")
        self._s.check_columns(defaults or {}, self._s.writable, "set")
        row = (await self._execute(self._s.lookup(keys))).scalars().one_or_none()
        if row is not None:
            return row, False
        dialect = self.session.get_bind().dialect.name
        stmt = self._s.insert_ignore(dialect, keys, dict(defaults or {}))
        row = (await self._execute(stmt)).scalars().one_or_none()
        if row is not None:
            return row, True
        row = (await self._execute(self._s.lookup(keys))).scalars().one_or_none()
        if row is None:
            raise self._s.lost_race(keys)
        return row, False

    async def page(
        self,
        stmt: Select[Any] | None = None,
        *,
        limit: int,
        offset: int = 0,
        with_total: bool = False,
    ) -> Page[ModelT]:
        """One offset page of ``stmt`` (default: every visible row); ``total`` when asked."""
        limit, offset = check_window(limit, offset)
        base = self._s.ordered(self._s.base(stmt))
        items = list((await self._execute(base.limit(limit).offset(offset))).scalars())
        total = None
        if with_total:
            if offset == 0 and len(items) < limit:
                total = len(items)
            else:
                total = int((await self._execute(self._s.count_of(base))).scalar_one())
        return Page(items, limit, offset, total)

    async def keyset_page(
        self,
        stmt: Select[Any] | None = None,
        *,
        sort: str | Sequence[str] | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> CursorPage[ModelT]:
        """One keyset page of ``stmt`` ordered by ``sort`` (then id), after ``cursor``."""
        limit, _ = check_window(limit)
        keyset = self._s.keyset(sort, self._cursor_secret)
        query = keyset.statement(self._s.base(stmt), cursor, limit)
        return keyset.page(list((await self._execute(query)).scalars()), limit)

    async def upsert(self, rows: Iterable[Mapping[str, Any]], **options: Any) -> UpsertResult:
        """:func:`~dtpyfw.db.abulk_upsert` of ``rows`` into this model's table."""
        return await abulk_upsert(self.session, self._s.model, rows, **options)

    async def _check_version(self, ident: Any, expected: int) -> None:
        current = (await self._execute(self._s.version_of(ident))).scalar_one_or_none()
        if current is not None and current != expected:
            raise self._s.stale(ident, current, expected)

    async def _execute(self, stmt: Any) -> Any:
        try:
            return await self.session.execute(stmt)
        except Exception as exc:
            self._raise(exc)
