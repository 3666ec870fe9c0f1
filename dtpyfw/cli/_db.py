"""``dtpyfw db``: Alembic migrations on the database a settings file describes.

::

    dtpyfw db upgrade config.yaml [REVISION]        # default: head
    dtpyfw db downgrade config.yaml REVISION        # e.g. -1 or base
    dtpyfw db current config.yaml
    dtpyfw db revision config.yaml -m "add notes" [--autogenerate]

The migration scripts are found with ``-c alembic.ini``, or ``-d DIR`` (the
script directory), else ``./alembic.ini``, else ``./migrations``.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dtpyfw.core.errors import ConfigError, DtpyfwError

if TYPE_CHECKING:
    from dtpyfw.db import DatabaseSettings

_DEFAULT_INI = Path("alembic.ini")
_DEFAULT_DIRECTORY = Path("migrations")
EXIT_OK = 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``db`` command and its subcommands to the ``dtpyfw`` parser."""
    db = commands.add_parser("db", help="run Alembic migrations on the settings' database")
    db_commands = db.add_subparsers(title="db commands")

    upgrade = db_commands.add_parser("upgrade", help="upgrade to a revision (default: head)")
    _common(upgrade)
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_upgrade)

    downgrade = db_commands.add_parser("downgrade", help="downgrade to a revision (-1, base)")
    _common(downgrade)
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=_downgrade)

    current = db_commands.add_parser("current", help="print the database's revision")
    current.add_argument("file", type=Path, help="settings file (YAML)")
    current.set_defaults(handler=_current)

    revision = db_commands.add_parser("revision", help="write a new migration script")
    _common(revision)
    revision.add_argument("-m", "--message", default=None, help="what the migration does")
    revision.add_argument(
        "--autogenerate", action="store_true", help="compare the models with the database"
    )
    revision.add_argument("--rev-id", default=None, help="the revision id (default: random)")
    revision.set_defaults(handler=_revision)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="settings file (YAML)")
    parser.add_argument(
        "-c", "--alembic-config", type=Path, default=None, help="alembic.ini to use"
    )
    parser.add_argument(
        "-d", "--directory", type=Path, default=None, help="migration scripts directory"
    )


def _upgrade(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.db._migrations import current, upgrade

    settings = _settings(args)
    upgrade(settings, args.revision, **_scripts(args))
    print(f"ok: upgraded to {_heads(current(settings))}", file=out)
    return EXIT_OK


def _downgrade(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.db._migrations import current, downgrade

    settings = _settings(args)
    downgrade(settings, args.revision, **_scripts(args))
    print(f"ok: downgraded to {_heads(current(settings))}", file=out)
    return EXIT_OK


def _current(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.db._migrations import current

    print(_heads(current(_settings(args))), file=out)
    return EXIT_OK


def _revision(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.db._migrations import revision

    paths = revision(
        _settings(args),
        args.message,
        autogenerate=args.autogenerate,
        rev_id=args.rev_id,
        **_scripts(args),
    )
    for path in paths:
        print(f"ok: wrote {path}", file=out)
    return EXIT_OK


def _settings(args: argparse.Namespace) -> DatabaseSettings:
    from dtpyfw.cli._main import _load

    db = _load(args).db
    if db is None:
        raise DtpyfwError(f"{args.file}: no `db:` section, so there is no database to migrate")
    return db


def _scripts(args: argparse.Namespace) -> dict[str, Any]:
    if args.alembic_config is not None:
        return {"config": args.alembic_config, "script_location": args.directory}
    if args.directory is not None:
        return {"script_location": args.directory}
    if _DEFAULT_INI.is_file():
        return {"config": _DEFAULT_INI}
    if _DEFAULT_DIRECTORY.is_dir():
        return {"script_location": _DEFAULT_DIRECTORY}
    raise ConfigError(
        "no migration scripts: pass -c alembic.ini or -d DIR "
        "(or run where ./alembic.ini or ./migrations exists)"
    )


def _heads(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) if heads else "(no revision)"
