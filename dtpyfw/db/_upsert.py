"""Bulk upsert: ``INSERT ... ON CONFLICT`` in chunks, or COPY for large batches.

:func:`bulk_upsert` (sync) and :func:`abulk_upsert` (asyncio) share one plan
(:class:`_Plan`): the statement, the conflict target, the columns to update and
the chunk size; they differ only in how they talk to the connection.

* **insert** (PostgreSQL and SQLite): ``INSERT ... VALUES (...), (...) ON
  CONFLICT (...) DO UPDATE SET ... | DO NOTHING``, executed in chunks whose
  bound parameters stay under the server's limit (65535 for PostgreSQL, 32766
  for SQLite >= 3.32 and 999 before), so a 100k-row input never builds one
  giant statement and is never held in memory whole.
* **copy** (PostgreSQL with psycopg): rows are streamed with ``COPY ... FROM
  STDIN`` into a temporary table, then ``INSERT ... SELECT ... ON CONFLICT``
  moves them in one statement. ``method="auto"`` takes it when the input has
  at least ``copy_threshold`` rows.

Counts: on PostgreSQL ``RETURNING (xmax = 0)`` tells inserted rows from updated
ones. SQLite cannot tell them apart after ``DO UPDATE``, so there ``inserted``
and ``updated`` are None and only ``affected`` is known; after ``DO NOTHING``
every affected row was inserted.

Semantics to know:

* every row has the same keys (attribute names of the model); columns left out
  get their defaults on insert (``id`` a fresh UUIDv7, ``created_at`` the
  server time) and are not touched on update;
* by default the update sets every given column except the conflict columns
  and the primary key; ``updated_at`` (any column with ``onupdate``) is
  refreshed and a versioned model's ``version`` increases;
* one key may appear only once per call: PostgreSQL refuses to update a row
  twice in one statement (a :class:`~dtpyfw.core.errors.DatabaseError`);
* the upsert runs in the caller's transaction and does not commit; ORM objects
  already loaded in the session are not refreshed.
"""

from __future__ import annotations

__all__ = ["UpsertResult", "abulk_upsert", "bulk_upsert"]

import itertools
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from sqlalchemy import Column, Table, func, inspect, literal, literal_column, select, table
from sqlalchemy import column as sql_column
from sqlalchemy.orm import Mapper

from dtpyfw.db._errors import translate_error

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session

Method = Literal["auto", "insert", "copy"]
OnConflict = Literal["update", "nothing"]

#: Bound parameters one statement may carry.
POSTGRES_MAX_PARAMETERS = 65535
SQLITE_MAX_PARAMETERS = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_MAX_CHUNK_ROWS = 500  # beyond this, longer VALUES lists only cost more to parse
DEFAULT_COPY_THRESHOLD = 5000


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What an upsert did. ``inserted`` / ``updated`` are None where the dialect cannot tell."""

    rows: int
    affected: int
    inserted: int | None
    updated: int | None
    method: Literal["insert", "copy"]


def bulk_upsert(
    target: Session | Connection,
    model: type[Any] | Table,
    rows: Iterable[Mapping[str, Any]],
    *,
    conflict_columns: Sequence[str] | None = None,
    constraint: str | None = None,
    update_columns: Sequence[str] | None = None,
    on_conflict: OnConflict = "update",
    method: Method = "auto",
    copy_threshold: int = DEFAULT_COPY_THRESHOLD,
    chunk_size: int | None = None,
) -> UpsertResult:
    """Insert ``rows`` into ``model``'s table, updating (or skipping) those that conflict.

    The conflict target is ``conflict_columns`` or the unique ``constraint``
    named (default: the primary key). ``update_columns`` overrides which
    columns a conflict updates; ``on_conflict="nothing"`` keeps existing rows.
    """
    from sqlalchemy.orm import Session

    connection = target.connection() if isinstance(target, Session) else target
    prepared = _prepare(
        model,
        connection,
        rows,
        (conflict_columns, constraint, update_columns, on_conflict, chunk_size),
        method=method,
        copy_threshold=copy_threshold,
    )
    if prepared is None:
        return UpsertResult(0, 0, 0, 0, "insert")
    plan, copy = prepared
    try:
        if copy:
            return _copy_sync(connection, plan, plan.buffered)
        return _insert_sync(connection, plan, plan.buffered)
    except Exception as exc:
        _raise(exc)


async def abulk_upsert(
    target: AsyncSession | AsyncConnection,
    model: type[Any] | Table,
    rows: Iterable[Mapping[str, Any]],
    *,
    conflict_columns: Sequence[str] | None = None,
    constraint: str | None = None,
    update_columns: Sequence[str] | None = None,
    on_conflict: OnConflict = "update",
    method: Method = "auto",
    copy_threshold: int = DEFAULT_COPY_THRESHOLD,
    chunk_size: int | None = None,
) -> UpsertResult:
    """Async twin of :func:`bulk_upsert`."""
    from sqlalchemy.ext.asyncio import AsyncSession

    connection = await target.connection() if isinstance(target, AsyncSession) else target
    prepared = _prepare(
        model,
        connection,
        rows,
        (conflict_columns, constraint, update_columns, on_conflict, chunk_size),
        method=method,
        copy_threshold=copy_threshold,
    )
    if prepared is None:
        return UpsertResult(0, 0, 0, 0, "insert")
    plan, copy = prepared
    try:
        if copy:
            return await _copy_async(connection, plan, plan.buffered)
        return await _insert_async(connection, plan, plan.buffered)
    except Exception as exc:
        _raise(exc)


def _prepare(
    model: type[Any] | Table,
    connection: Connection | AsyncConnection,
    rows: Iterable[Mapping[str, Any]],
    options: tuple[Sequence[str] | None, str | None, Sequence[str] | None, OnConflict, int | None],
    *,
    method: Method,
    copy_threshold: int,
) -> tuple[_Plan, bool] | None:
    """The plan of an upsert and whether it goes by COPY; None when there are no rows."""
    conflict_columns, constraint, update_columns, on_conflict, chunk_size = options
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return None
    plan = _Plan(
        model,
        connection.dialect,  # only now: no rows must not need a connection
        first,
        conflict_columns=conflict_columns,
        constraint=constraint,
        update_columns=update_columns,
        on_conflict=on_conflict,
        chunk_size=chunk_size,
    )
    return plan, plan.use_copy(method, itertools.chain([first], iterator), copy_threshold)


class _Plan:
    """Everything about one upsert that does not depend on sync or async IO."""

    def __init__(
        self,
        model: type[Any] | Table,
        dialect: Dialect,
        first: Mapping[str, Any],
        *,
        conflict_columns: Sequence[str] | None,
        constraint: str | None,
        update_columns: Sequence[str] | None,
        on_conflict: OnConflict,
        chunk_size: int | None,
    ) -> None:
        self.dialect = dialect
        self.table, mapper = _table_of(model)
        self.name = self.table.name
        if dialect.name not in ("postgresql", "sqlite"):
            raise ValueError(f"bulk upsert supports postgresql and sqlite, not {dialect.name}")
        if on_conflict not in ("update", "nothing"):
            raise ValueError(f"on_conflict is 'update' or 'nothing', not {on_conflict!r}")
        self.keys_of = _attribute_keys(self.table, mapper)
        self.given_keys = tuple(first)
        self.columns = tuple(self._column_key(k, "row key") for k in self.given_keys)
        self.renamed = self.columns != self.given_keys
        version = mapper.version_id_col if mapper is not None else None
        self.version: str | None = None
        if version is not None and version.key not in self.columns:
            self.version = version.key
        self.conflict_columns, self.constraint = self._target(conflict_columns, constraint)
        self.set_columns = self._updates(update_columns) if on_conflict == "update" else ()
        limit = POSTGRES_MAX_PARAMETERS if dialect.name == "postgresql" else SQLITE_MAX_PARAMETERS
        # SQLAlchemy splits a batch above its own (lower) cap; stay under both.
        limit = min(limit, getattr(dialect, "insertmanyvalues_max_parameters", limit))
        most = max(1, limit // len(self.columns))
        if chunk_size is not None and not 1 <= chunk_size <= most:
            raise ValueError(f"chunk_size must be 1..{most} for {len(self.columns)} column(s)")
        self.chunk_size = chunk_size or min(most, _MAX_CHUNK_ROWS)
        self.buffered: Iterable[Mapping[str, Any]] = ()

    # -- choosing the method ----------------------------------------------------------
    def use_copy(self, method: Method, stream: Iterator[Mapping[str, Any]], threshold: int) -> bool:
        """Decide insert or copy; ``self.buffered`` then yields every row, none lost."""
        can_copy = self.dialect.name == "postgresql" and self.dialect.driver == "psycopg"
        if method not in ("auto", "insert", "copy"):
            raise ValueError(f"method is 'auto', 'insert' or 'copy', not {method!r}")
        if method == "copy" and not can_copy:
            raise ValueError(
                f"method='copy' needs postgresql with psycopg, not {self.dialect.name}"
            )
        self.buffered = stream
        if method != "auto":
            return method == "copy"
        if not can_copy:
            return False
        head = list(itertools.islice(stream, threshold))
        self.buffered = itertools.chain(head, stream)
        return len(head) >= threshold

    # -- statements -------------------------------------------------------------------
    def insert(self) -> Any:
        """The dialect's INSERT for ``self.table`` (it offers ``on_conflict_*``)."""
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if self.dialect.name == "postgresql" else sqlite
        return dialect.insert(self.table)

    def on_conflict(self, stmt: Any) -> Any:
        """``stmt`` with its ON CONFLICT clause and a RETURNING that counts inserts."""
        target: dict[str, Any] = (
            {"constraint": self.constraint}
            if self.constraint is not None
            else {"index_elements": list(self.conflict_columns)}
        )
        if self.set_columns:
            values: dict[str, Any] = {key: stmt.excluded[key] for key in self.set_columns}
            values.update(self._on_update(values))
            stmt = stmt.on_conflict_do_update(set_=values, **target)
        else:
            stmt = stmt.on_conflict_do_nothing(**target)
        flag = "(xmax = 0)" if self.dialect.name == "postgresql" else "1"
        return stmt.returning(literal_column(flag).label("inserted"))

    def values_statement(self) -> Any:
        stmt = self.insert()
        if self.version is not None:
            stmt = stmt.values({self.version: literal(1)})
        return self.on_conflict(stmt).execution_options(insertmanyvalues_page_size=self.chunk_size)

    def counts(
        self, flags: Sequence[Any], rows: int, method: Literal["insert", "copy"]
    ) -> UpsertResult:
        affected = len(flags)
        if self.dialect.name == "postgresql":
            inserted = sum(1 for flag in flags if flag)
            return UpsertResult(rows, affected, inserted, affected - inserted, method)
        if not self.set_columns:
            return UpsertResult(rows, affected, affected, 0, method)
        return UpsertResult(rows, affected, None, None, method)

    # -- rows ---------------------------------------------------------------------------
    def chunks(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
        """Rows checked (same keys as the first) and renamed to column keys, in chunks."""
        expected = set(self.given_keys)
        iterator = iter(rows)
        number = 0
        while True:
            chunk = list(itertools.islice(iterator, self.chunk_size))
            if not chunk:
                return
            for row in chunk:
                if row.keys() != expected:
                    self._bad_row(number, row)
                number += 1
            if self.renamed:
                pairs = list(zip(self.given_keys, self.columns, strict=True))
                chunk = [{column: row[key] for key, column in pairs} for row in chunk]
            yield chunk

    def copy_columns(self) -> tuple[list[str], list[Callable[[], Any]]]:
        """Columns the COPY carries: the given ones, then those with a Python-side default."""
        extra_names: list[str] = []
        makers: list[Callable[[], Any]] = []
        for column in self.table.columns:
            default: Any = column.default
            if column.key in self.columns or column.key == self.version or default is None:
                continue
            if default.is_callable:
                extra_names.append(column.key)
                makers.append(_caller(default.arg))
            elif default.is_scalar:
                extra_names.append(column.key)
                makers.append(_constant(default.arg))
        return extra_names, makers

    def sql_defaults(self) -> dict[str, Any]:
        """Columns whose insert default is a SQL expression, plus ``version = 1``."""
        values: dict[str, Any] = {}
        for column in self.table.columns:
            default: Any = column.default
            if column.key in self.columns or default is None:
                continue
            if default.is_clause_element:
                values[column.key] = default.arg
        if self.version is not None:
            values[self.version] = literal(1)
        return values

    def processors(self, names: Sequence[str]) -> list[Callable[[Any], Any] | None]:
        """Each column's bind processor, so COPY sends what an INSERT would."""
        return [
            self.table.c[name].type.dialect_impl(self.dialect).bind_processor(self.dialect)
            for name in names
        ]

    def copy_rows(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[Any, ...]]:
        """Each row as the tuple COPY writes, defaults generated, values processed."""
        extra_names, makers = self.copy_columns()
        processors = self.processors([*self.columns, *extra_names])
        columns = self.columns
        plain = not any(processors)
        for chunk in self.chunks(rows):
            for row in chunk:
                values = (*[row[c] for c in columns], *[make() for make in makers])
                if plain:
                    yield values
                else:
                    yield tuple(
                        value if process is None or value is None else process(value)
                        for process, value in zip(processors, values, strict=True)
                    )

    def copy_sql(self, temp: str, names: Sequence[str]) -> tuple[str, str, str, Any]:
        """CREATE TEMP TABLE, COPY, DROP, and the INSERT ... SELECT that counts."""
        quote = self.dialect.identifier_preparer.quote
        target = self.dialect.identifier_preparer.format_table(self.table)
        column_list = ", ".join(quote(name) for name in names)
        # Identifiers only, each quoted by the dialect; no value is ever formatted in.
        source_sql = f"SELECT {column_list} FROM {target} WITH NO DATA"  # noqa: S608
        create = f"CREATE TEMP TABLE {quote(temp)} ON COMMIT DROP AS {source_sql}"
        copy = f"COPY {quote(temp)} ({column_list}) FROM STDIN"
        drop = f"DROP TABLE IF EXISTS {quote(temp)}"
        staged = table(temp, *(sql_column(name) for name in names))
        defaults = self.sql_defaults()
        source = select(*(staged.c[name] for name in names), *defaults.values())
        stmt = self.insert().from_select([*names, *defaults], source, include_defaults=False)
        upserted = self.on_conflict(stmt).cte("upserted")
        counting = select(func.count().filter(upserted.c.inserted), func.count()).select_from(
            upserted
        )
        return create, copy, drop, counting

    def temp_name(self) -> str:
        return f"dtpyfw_upsert_{secrets.token_hex(6)}"

    # -- private ------------------------------------------------------------------------
    def _column_key(self, key: str, what: str) -> str:
        try:
            return self.keys_of[key]
        except KeyError:
            known = ", ".join(sorted(self.keys_of))
            raise ValueError(
                f"{self.name}: {what} {key!r} is not a column; columns: {known}"
            ) from None

    def _target(
        self, conflict_columns: Sequence[str] | None, constraint: str | None
    ) -> tuple[tuple[str, ...], str | None]:
        if conflict_columns is not None and constraint is not None:
            raise ValueError("give conflict_columns or constraint, not both")
        if constraint is not None:
            columns = self._constraint_columns(constraint)
            # SQLite has no ON CONFLICT ON CONSTRAINT: it gets the constraint's columns.
            named = constraint if self.dialect.name == "postgresql" else None
            return columns, named
        if conflict_columns is None:
            return tuple(c.key for c in self.table.primary_key.columns), None
        if isinstance(conflict_columns, str):
            raise ValueError("conflict_columns is a sequence of names, e.g. ('email',)")
        return tuple(self._column_key(k, "conflict column") for k in conflict_columns), None

    def _constraint_columns(self, name: str) -> tuple[str, ...]:
        candidates: list[Any] = [*self.table.constraints, *self.table.indexes]
        for candidate in candidates:
            unique = getattr(candidate, "unique", True)
            if str(candidate.name) == name and unique and hasattr(candidate, "columns"):
                return tuple(c.key for c in candidate.columns)
        known = sorted(str(c.name) for c in candidates if c.name and getattr(c, "unique", True))
        raise ValueError(
            f"{self.name}: no unique constraint or index named {name!r}; known: {', '.join(known)}"
        )

    def _updates(self, update_columns: Sequence[str] | None) -> tuple[str, ...]:
        if update_columns is not None:
            if isinstance(update_columns, str):
                raise ValueError("update_columns is a sequence of names, e.g. ('title',)")
            chosen = tuple(self._column_key(k, "update column") for k in update_columns)
            missing = sorted(set(chosen) - set(self.columns))
            if missing:
                raise ValueError(f"update columns {', '.join(missing)} are not in the rows")
            return chosen
        keys = set(self.conflict_columns) | {c.key for c in self.table.primary_key.columns}
        return tuple(c for c in self.columns if c not in keys)

    def _on_update(self, values: Mapping[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for column in self.table.columns:
            onupdate: Any = column.onupdate
            if column.key in values or onupdate is None:
                continue
            if onupdate.is_clause_element or onupdate.is_scalar:
                extra[column.key] = onupdate.arg
            elif onupdate.is_callable:
                extra[column.key] = _caller(onupdate.arg)()
        if self.version is not None:
            extra[self.version] = self.table.c[self.version] + 1
        return extra

    def _bad_row(self, number: int, row: Mapping[str, Any]) -> NoReturn:
        given = set(row.keys()) if isinstance(row, Mapping) else set()
        missing = sorted(set(self.given_keys) - given)
        extra = sorted(given - set(self.given_keys))
        raise ValueError(
            f"row {number} of {self.name}: every row needs the first row's keys "
            f"(missing {missing or 'none'}, unexpected {extra or 'none'})"
        )


# -- sync IO ------------------------------------------------------------------------------
def _insert_sync(
    connection: Connection, plan: _Plan, rows: Iterable[Mapping[str, Any]]
) -> UpsertResult:
    stmt = plan.values_statement()
    flags: list[Any] = []
    total = 0
    for chunk in plan.chunks(rows):
        total += len(chunk)
        flags.extend(connection.execute(stmt, chunk).scalars().all())
    return plan.counts(flags, total, "insert")


def _copy_sync(
    connection: Connection, plan: _Plan, rows: Iterable[Mapping[str, Any]]
) -> UpsertResult:
    extra_names, _ = plan.copy_columns()
    names = [*plan.columns, *extra_names]
    create, copy_sql, drop, counting = plan.copy_sql(plan.temp_name(), names)
    connection.exec_driver_sql(create)
    driver = connection.connection.driver_connection
    assert driver is not None
    total = 0
    with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for values in plan.copy_rows(rows):
            copy.write_row(values)
            total += 1
    inserted, affected = connection.execute(counting).one()
    connection.exec_driver_sql(drop)
    return _copy_result(plan, total, inserted, affected)


# -- async IO -----------------------------------------------------------------------------
async def _insert_async(
    connection: AsyncConnection, plan: _Plan, rows: Iterable[Mapping[str, Any]]
) -> UpsertResult:
    stmt = plan.values_statement()
    flags: list[Any] = []
    total = 0
    for chunk in plan.chunks(rows):
        total += len(chunk)
        flags.extend((await connection.execute(stmt, chunk)).scalars().all())
    return plan.counts(flags, total, "insert")


async def _copy_async(
    connection: AsyncConnection, plan: _Plan, rows: Iterable[Mapping[str, Any]]
) -> UpsertResult:
    extra_names, _ = plan.copy_columns()
    names = [*plan.columns, *extra_names]
    create, copy_sql, drop, counting = plan.copy_sql(plan.temp_name(), names)
    await connection.exec_driver_sql(create)
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    total = 0
    async with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for values in plan.copy_rows(rows):
            await copy.write_row(values)
            total += 1
    inserted, affected = (await connection.execute(counting)).one()
    await connection.exec_driver_sql(drop)
    return _copy_result(plan, total, inserted, affected)


# -- helpers ------------------------------------------------------------------------------
def _copy_result(plan: _Plan, total: int, inserted: int, affected: int) -> UpsertResult:
    if not plan.set_columns:
        return UpsertResult(total, affected, affected, 0, "copy")
    return UpsertResult(total, affected, inserted, affected - inserted, "copy")


def _table_of(model: type[Any] | Table) -> tuple[Table, Mapper[Any] | None]:
    if isinstance(model, Table):
        return model, None
    mapper: Mapper[Any] = inspect(model)
    local = mapper.local_table
    if not isinstance(local, Table):
        raise ValueError(f"{model.__name__} is not mapped to a table")
    return local, mapper


def _attribute_keys(table_: Table, mapper: Mapper[Any] | None) -> dict[str, str]:
    """Row key (attribute name for a model, column key for a table) to column key."""
    keys = {column.key: column.key for column in table_.columns}
    if mapper is not None:
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if isinstance(column, Column) and column.table is table_:
                keys[prop.key] = column.key
    return keys


def _caller(function: Callable[[Any], Any]) -> Callable[[], Any]:
    # SQLAlchemy wraps a no-argument default as a function of the execution context.
    return lambda: function(None)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _raise(exc: BaseException) -> NoReturn:
    failure = translate_error(exc)
    if failure is exc:
        raise exc
    raise failure from exc
