"""Alembic migrations run on the service's own database settings and engine.

The helpers take what a service already has (a :class:`~dtpyfw.db.Database`,
an ``Engine``, :class:`~dtpyfw.db.DatabaseSettings` or a URL) and an Alembic
``config`` (``alembic.ini``, a ``Config``) or just a ``script_location``. They
open one connection in a transaction, hand it to Alembic as
``config.attributes["connection"]`` (the Alembic cookbook's way of sharing a
connection), set ``sqlalchemy.url`` for offline use, and commit when the
command succeeds. ``env.py`` needs only::

    from dtpyfw.db import ModelBase, run_migrations
    import my_service.models  # noqa: F401 - registers the tables on ModelBase.metadata

    run_migrations(ModelBase.metadata)

Errors leave as :class:`~dtpyfw.core.errors.DatabaseError` (Alembic's own, such
as an unknown revision, included), chained to the original. The same commands
run from the shell: ``dtpyfw db upgrade|downgrade|current|revision FILE``.
"""

from __future__ import annotations

__all__ = ["current", "downgrade", "revision", "run_migrations", "upgrade"]

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtpyfw.core._extras import require
from dtpyfw.core.errors import ConfigError, DatabaseError
from dtpyfw.db._database import AsyncDatabase, Database
from dtpyfw.db._engine import create_sync_engine
from dtpyfw.db._errors import translate_error
from dtpyfw.db._settings import DatabaseSettings

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection, Engine

    Target = Database | Engine | DatabaseSettings | str
    AlembicConfig = Config | str | Path | None


def upgrade(
    target: Target,
    revision: str = "head",
    *,
    config: AlembicConfig = None,
    script_location: str | Path | None = None,
) -> None:
    """Upgrade the database to ``revision`` (default: the newest, ``head``)."""
    from alembic import command

    with _alembic(target, config, script_location) as cfg:
        command.upgrade(cfg, revision)


def downgrade(
    target: Target,
    revision: str,
    *,
    config: AlembicConfig = None,
    script_location: str | Path | None = None,
) -> None:
    """Downgrade the database to ``revision`` (``"-1"`` for one step, ``"base"`` for all)."""
    from alembic import command

    with _alembic(target, config, script_location) as cfg:
        command.downgrade(cfg, revision)


def revision(
    target: Target,
    message: str | None = None,
    *,
    autogenerate: bool = False,
    config: AlembicConfig = None,
    script_location: str | Path | None = None,
    rev_id: str | None = None,
) -> list[Path]:
    """Write a new migration script; ``autogenerate`` compares the models with the database.

    Returns the paths of the scripts written.
    """
    from alembic import command

    with _alembic(target, config, script_location) as cfg:
        made = command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
    scripts = made if isinstance(made, list) else [made]
    return [Path(script.path) for script in scripts if script is not None]


def current(target: Target) -> tuple[str, ...]:
    """The revisions the database is at (empty before the first migration)."""
    require("alembic", "migrations")
    from alembic.migration import MigrationContext

    with _connection(target) as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return tuple(heads)


def run_migrations(target_metadata: MetaData | None = None, **configure: Any) -> None:
    """The body of ``env.py``: run the migrations on the connection the helpers pass.

    Without a shared connection (plain ``alembic upgrade head``), it connects to
    ``sqlalchemy.url`` with dtpyfw's engine; offline (``--sql``) it renders SQL
    for that URL. ``target_metadata`` defaults to ``ModelBase.metadata``.
    SQLite gets ``render_as_batch=True`` (its ALTER TABLE is limited).
    ``configure`` goes to ``context.configure``.
    """
    from alembic import context

    if target_metadata is None:
        from dtpyfw.db._models import ModelBase

        target_metadata = ModelBase.metadata
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            **configure,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared, target_metadata, configure)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise ConfigError("alembic: no connection and no sqlalchemy.url to connect to")
    engine = create_sync_engine(DatabaseSettings(url=url))
    try:
        with engine.begin() as connection:
            _run(connection, target_metadata, configure)
    finally:
        engine.dispose()


def _run(connection: Connection, metadata: MetaData, configure: dict[str, Any]) -> None:
    from alembic import context

    options = {"render_as_batch": connection.dialect.name == "sqlite", **configure}
    context.configure(connection=connection, target_metadata=metadata, **options)
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def _alembic(
    target: Target, config: AlembicConfig, script_location: str | Path | None
) -> Iterator[Config]:
    """A Config with a shared connection in a transaction, committed on success."""
    require("alembic", "migrations")
    from alembic.util import CommandError

    cfg = _config(config, script_location)
    with _connection(target) as connection:
        url = connection.engine.url.render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser syntax
        cfg.attributes["connection"] = connection
        try:
            yield cfg
        except CommandError as exc:
            raise DatabaseError(f"alembic: {exc}") from exc
        finally:
            cfg.attributes.pop("connection", None)


def _config(config: AlembicConfig, script_location: str | Path | None) -> Config:
    from alembic.config import Config

    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"alembic config {str(path)!r} does not exist")
        cfg = Config(str(path))
    if script_location is not None:
        cfg.set_main_option("script_location", str(script_location))
    if not cfg.get_main_option("script_location"):
        raise ConfigError(
            "alembic: no script_location; pass config='alembic.ini' or script_location='migrations'"
        )
    return cfg


@contextlib.contextmanager
def _connection(target: Target) -> Iterator[Connection]:
    engine, owned = _engine(target)
    try:
        with engine.begin() as connection:
            yield connection
    except Exception as exc:
        failure = translate_error(exc)
        if failure is exc:
            raise
        raise failure from exc
    finally:
        if owned:
            engine.dispose()


def _engine(target: object) -> tuple[Engine, bool]:
    """The engine to migrate with, and whether it is ours to dispose."""
    from sqlalchemy.engine import Engine

    if isinstance(target, Database):
        return target.engine, False
    if isinstance(target, Engine):
        return target, False
    if isinstance(target, str):
        target = DatabaseSettings(url=target)
    if isinstance(target, DatabaseSettings):
        return create_sync_engine(target), True
    if isinstance(target, AsyncDatabase):
        raise TypeError(
            "migrations run on a sync engine: pass the DatabaseSettings (or container.db.database()"
            "), or call from async code with `await asyncio.to_thread(upgrade, settings, ...)`"
        )
    raise TypeError(
        f"cannot migrate {target!r}: expected Database, Engine, DatabaseSettings or URL"
    )
