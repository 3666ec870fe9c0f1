"""Alembic helpers and `dtpyfw db` on SQLite and PostgreSQL, with scripts made in tmp_path."""

from __future__ import annotations

import io
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import alembic
import pytest
from sqlalchemy import inspect

from dtpyfw.cli import main
from dtpyfw.core.errors import ConfigError, DatabaseError
from dtpyfw.db import (
    AsyncDatabase,
    Database,
    DatabaseSettings,
    create_async_engine,
    create_sync_engine,
    current,
    downgrade,
    revision,
    upgrade,
)

ENV_PY = """
from sqlalchemy import Column, Integer, MetaData, String, Table

from dtpyfw.db import run_migrations

metadata = MetaData()
Table("mig_things", metadata, Column("id", Integer, primary_key=True), Column("label", String(20)))
Table("mig_widgets", metadata, Column("id", Integer, primary_key=True))

run_migrations(metadata)
"""

FIRST = '''
"""create things"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("mig_things", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("mig_things")
'''

SECOND = '''
"""add label"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mig_things", sa.Column("label", sa.String(20)))


def downgrade() -> None:
    with op.batch_alter_table("mig_things") as batch:
        batch.drop_column("label")
'''


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A migration directory: env.py using run_migrations and two revisions."""
    directory = tmp_path / "migrations"
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text(textwrap.dedent(ENV_PY), encoding="utf-8")
    template = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"
    shutil.copy(template, directory / "script.py.mako")
    (directory / "versions" / "0001_create.py").write_text(FIRST, encoding="utf-8")
    (directory / "versions" / "0002_label.py").write_text(SECOND, encoding="utf-8")
    return directory


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
    postgres_url: str = request.getfixturevalue("postgres_url")
    return postgres_url


@pytest.fixture
def database(url: str) -> Iterator[Database]:
    """A sync Database on ``url``."""
    engine = create_sync_engine(DatabaseSettings(url=url))
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """A sync Database on a SQLite file (for checks that do not depend on the dialect)."""
    engine = create_sync_engine(DatabaseSettings(name=str(tmp_path / "plain.sqlite3")))
    yield Database(engine)
    engine.dispose()


def _columns(database: Database, table: str) -> list[str]:
    schema = inspect(database.engine)
    if not schema.has_table(table):
        return []
    return [column["name"] for column in schema.get_columns(table)]


def run(*argv: str) -> tuple[int, str]:
    """Run the dtpyfw CLI; return its exit status and output."""
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_upgrade_downgrade_and_current(database: Database, scripts: Path) -> None:
    """upgrade to head, step down one revision, then to base; current follows each step."""
    assert current(database) == ()
    upgrade(database, script_location=scripts)
    assert current(database) == ("0002",)
    assert _columns(database, "mig_things") == ["id", "label"]
    downgrade(database, "-1", script_location=scripts)
    assert current(database) == ("0001",)
    assert _columns(database, "mig_things") == ["id"]
    downgrade(database, "base", script_location=scripts)
    assert current(database) == ()
    assert _columns(database, "mig_things") == []


def test_helpers_accept_settings_urls_engines_and_an_ini(
    url: str, database: Database, scripts: Path, tmp_path: Path
) -> None:
    """The target may be settings, a URL or an engine; the scripts may come from alembic.ini."""
    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {scripts}\n", encoding="utf-8")
    upgrade(DatabaseSettings(url=url), "0001", config=ini)
    assert current(url) == ("0001",)
    upgrade(database.engine, config=str(ini))
    assert current(DatabaseSettings(url=url)) == ("0002",)


def test_revision_autogenerates_from_the_metadata(database: Database, scripts: Path) -> None:
    """revision(autogenerate=True) compares env.py's metadata with the database and writes it."""
    upgrade(database, script_location=scripts)
    (path,) = revision(
        database, "add widgets", autogenerate=True, rev_id="0003", script_location=scripts
    )
    assert path.parent == scripts / "versions"
    body = path.read_text(encoding="utf-8")
    assert "op.create_table('mig_widgets'" in body
    assert "down_revision: Union[str, Sequence[str], None] = '0002'" in body
    upgrade(database, script_location=scripts)
    assert current(database) == ("0003",)
    assert _columns(database, "mig_widgets") == ["id"]


def test_alembic_errors_are_database_errors(sqlite_database: Database, scripts: Path) -> None:
    """An unknown revision raises DatabaseError chained to Alembic's CommandError."""
    database = sqlite_database
    with pytest.raises(DatabaseError, match=r"alembic: .*nope") as info:
        upgrade(database, "nope", script_location=scripts)
    assert type(info.value.__cause__).__name__ == "CommandError"
    assert current(database) == ()


def test_missing_scripts_are_config_errors(sqlite_database: Database, tmp_path: Path) -> None:
    """No script_location, or an alembic.ini that does not exist, is a ConfigError."""
    database = sqlite_database
    with pytest.raises(ConfigError, match="no script_location"):
        upgrade(database)
    with pytest.raises(ConfigError, match="does not exist"):
        upgrade(database, config=tmp_path / "missing.ini")


async def test_an_async_database_is_refused_with_a_hint(tmp_path: Path) -> None:
    """Migrations need a sync engine: an AsyncDatabase raises TypeError saying what to pass."""
    engine = create_async_engine(DatabaseSettings(name=str(tmp_path / "a.sqlite3")))
    try:
        with pytest.raises(TypeError, match=r"asyncio\.to_thread"):
            current(AsyncDatabase(engine))  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def test_cli_runs_every_db_command(
    url: str, database: Database, scripts: Path, tmp_path: Path
) -> None:
    """`dtpyfw db upgrade|current|downgrade|revision FILE` work against the settings' database."""
    config = tmp_path / "config.yaml"
    config.write_text(f"db:\n  url: '{url}'\n", encoding="utf-8")
    code, out = run("db", "upgrade", str(config), "0001", "-d", str(scripts))
    assert (code, out) == (0, "ok: upgraded to 0001\n")
    code, out = run("db", "upgrade", str(config), "-d", str(scripts))
    assert (code, out) == (0, "ok: upgraded to 0002\n")
    assert run("db", "current", str(config)) == (0, "0002\n")
    code, out = run(
        "db", "revision", str(config), "-d", str(scripts), "-m", "widgets", "--autogenerate",
        "--rev-id", "0003",
    )  # fmt: skip
    assert code == 0
    assert out.startswith("ok: wrote ")
    assert out.rstrip().endswith("0003_widgets.py")
    code, out = run("db", "downgrade", str(config), "base", "-d", str(scripts))
    assert (code, out) == (0, "ok: downgraded to (no revision)\n")
    assert _columns(database, "mig_things") == []


def test_cli_finds_scripts_in_the_working_directory(
    tmp_path: Path,
    scripts: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without -c/-d, ./alembic.ini then ./migrations are used; with neither, exit 1."""
    config = tmp_path / "config.yaml"
    config.write_text(f"db:\n  name: '{tmp_path / 'cwd.sqlite3'}'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run("db", "upgrade", str(config)) == (0, "ok: upgraded to 0002\n")
    scripts.rename(tmp_path / "elsewhere")
    code, _ = run("db", "upgrade", str(config))
    assert code == 1
    assert "no migration scripts: pass -c alembic.ini or -d DIR" in capsys.readouterr().err


def test_cli_reports_problems_on_stderr(
    tmp_path: Path, scripts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A settings file without db, or an unknown revision, exits 1 with a one-line error."""
    no_db = tmp_path / "no-db.yaml"
    no_db.write_text("storage:\n  backend: memory\n", encoding="utf-8")
    assert run("db", "current", str(no_db))[0] == 1
    assert "no `db:` section" in capsys.readouterr().err
    config = tmp_path / "config.yaml"
    config.write_text(f"db:\n  name: '{tmp_path / 'x.sqlite3'}'\n", encoding="utf-8")
    assert run("db", "downgrade", str(config), "nope", "-d", str(scripts))[0] == 1
    assert capsys.readouterr().err.startswith("error: alembic: ")
