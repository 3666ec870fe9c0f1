"""Relational databases with SQLAlchemy 2: engines, sessions, models, queries and migrations.

Build :class:`DatabaseSettings` (SQLite by default, PostgreSQL via psycopg 3),
then resolve ``session`` / ``async_session`` from :class:`DatabaseContainer`
inside a request scope, or use :class:`Database` / :class:`AsyncDatabase`
directly::

    with database.session() as session:   # commit on success, rollback on error
        notes = Repository(Note, session)
        notes.create(title="hello")

On top: :class:`Repository` / :class:`AsyncRepository` (get, update with
optimistic locking, soft delete, race-safe ``get_or_create``, offset and keyset
pages), :class:`FilterSpec` (query parameters to WHERE / ORDER BY, checked
against a whitelist), :func:`bulk_upsert` / :func:`abulk_upsert`, and Alembic
helpers (:func:`upgrade`, :func:`downgrade`, :func:`revision`, :func:`current`,
:func:`run_migrations` for ``env.py``). The guide is ``docs/db.md``.

Importing this package needs no optional extra. What builds SQL (models,
repositories, filters, upsert, migrations) needs SQLAlchemy when first used:
install ``dtpyfw[db]`` (SQLite) or ``dtpyfw[postgres]``, and
``dtpyfw[migrations]`` for Alembic.
"""

import typing as _typing

from dtpyfw.db._container import DatabaseContainer
from dtpyfw.db._database import AsyncDatabase, Database, acreate_all, create_all
from dtpyfw.db._engine import create_async_engine, create_sync_engine
from dtpyfw.db._errors import StaleVersionError
from dtpyfw.db._migrations import current, downgrade, revision, run_migrations, upgrade
from dtpyfw.db._settings import DatabaseReplicaSettings, DatabaseSettings, SettingsBuilder
from dtpyfw.db._uuid import uuid7

if _typing.TYPE_CHECKING:
    from dtpyfw.db._filters import FilterSpec
    from dtpyfw.db._models import ModelBase, ServerNow, SoftDeleteMixin, VersionedMixin
    from dtpyfw.db._pagination import CursorPage, Page
    from dtpyfw.db._repository import AsyncRepository, Repository
    from dtpyfw.db._upsert import UpsertResult, abulk_upsert, bulk_upsert

__all__ = [
    "AsyncDatabase",
    "AsyncRepository",
    "CursorPage",
    "Database",
    "DatabaseContainer",
    "DatabaseReplicaSettings",
    "DatabaseSettings",
    "FilterSpec",
    "ModelBase",
    "Page",
    "Repository",
    "ServerNow",
    "SettingsBuilder",
    "SoftDeleteMixin",
    "StaleVersionError",
    "UpsertResult",
    "VersionedMixin",
    "abulk_upsert",
    "acreate_all",
    "bulk_upsert",
    "create_all",
    "create_async_engine",
    "create_sync_engine",
    "current",
    "downgrade",
    "revision",
    "run_migrations",
    "upgrade",
    "uuid7",
]

# Modules that import SQLAlchemy at import time: loaded on first access.
_LAZY: dict[str, str] = {
    "AsyncRepository": "_repository",
    "CursorPage": "_pagination",
    "FilterSpec": "_filters",
    "ModelBase": "_models",
    "Page": "_pagination",
    "Repository": "_repository",
    "ServerNow": "_models",
    "SoftDeleteMixin": "_models",
    "UpsertResult": "_upsert",
    "VersionedMixin": "_models",
    "abulk_upsert": "_upsert",
    "bulk_upsert": "_upsert",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is not None:
        import importlib

        from dtpyfw.core._extras import require

        require("sqlalchemy", "db")
        value = getattr(importlib.import_module(f"dtpyfw.db.{module_name}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
