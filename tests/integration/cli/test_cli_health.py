"""`dtpyfw health` and container health against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from dtpyfw.cli import main
from dtpyfw.config import load_settings
from dtpyfw.testing import closing_container


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def _config(tmp_path: Path, postgres_url: str, redis_url: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"db:\n  url: {postgres_url}\nredis:\n  url: {redis_url}\nstorage:\n  backend: memory\n",
        encoding="utf-8",
    )
    return config


def test_container_health_on_real_servers(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """health() and ahealth() report PostgreSQL and Redis as up, through the container."""
    settings = load_settings(_config(tmp_path, postgres_url, redis_url), env={}, env_file=None)
    with closing_container(settings) as container:
        report = container.health()
        assert report.ok, report.as_dict()
        assert {r.name for r in report.results} == {"db", "redis", "storage"}
        areport = asyncio.run(container.ahealth())
        assert areport.ok, areport.as_dict()


def test_cli_health_on_real_servers(tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    """`dtpyfw health FILE` exits 0 with one ok line per configured backend."""
    code, out = run("health", str(_config(tmp_path, postgres_url, redis_url)))
    assert code == 0, out
    assert sorted(line.split()[1] for line in out.splitlines()) == ["db", "redis", "storage"]
    assert all(line.startswith("ok ") for line in out.splitlines())


def test_cli_health_fails_for_a_closed_port(tmp_path: Path) -> None:
    """A backend that refuses connections makes `dtpyfw health` exit 1 naming it."""
    config = tmp_path / "bad.yaml"
    config.write_text("redis:\n  port: 1\n  connect_timeout: 0.2\n  retries: 0\n", encoding="utf-8")
    code, out = run("health", "--timeout", "2", str(config))
    assert code == 1
    assert out.startswith("FAIL redis")
