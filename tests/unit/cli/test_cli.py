"""The dtpyfw command: config check/show/schema/example, health and graph."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from dtpyfw.cli import main
from dtpyfw.config._example import render_example

ROOT = Path(__file__).resolve().parents[3]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_example_file_is_generated_from_the_models_and_loads() -> None:
    """config.example.yaml is exactly what the models describe, and it validates."""
    example = ROOT / "config.example.yaml"
    assert example.read_text(encoding="utf-8") == render_example(), (
        "config.example.yaml is stale: run `dtpyfw config example > config.example.yaml`"
    )
    code, out = run("config", "check", str(example))
    assert code == 0
    assert out.strip() == f"ok: {example} (subsystems: db, storage, messaging, http)"


def test_config_check_lists_every_configured_subsystem(tmp_path: Path) -> None:
    """The summary names each section the container will build, the newer ones too."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "redis: {}\nkafka: {bootstrap_servers: ['127.0.0.1:9092']}\n"
        "ftp: {host: 127.0.0.1}\nsecurity: {}\nworker: {strategy: kafka}\n"
    )
    code, out = run("config", "check", str(config))
    assert code == 0
    assert out.strip().endswith("(subsystems: redis, kafka, ftp, http, security, worker)")


def test_wrong_key_in_example_gives_the_precise_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in a copy of the example names file, line, path and the likely key."""
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    index = lines.index("  pool_size: 5")
    lines[index] = "  pool_sise: 5"
    bad = tmp_path / "config.yaml"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _ = run("config", "check", str(bad))
    assert code == 1
    err = capsys.readouterr().err
    assert (
        f"{bad}:{index + 1}: db.pool_sise: unknown key 'pool_sise' (did you mean 'pool_size'?)"
        in err
    )


def test_show_masks_secrets(tmp_path: Path) -> None:
    """config show prints resolved settings with every secret masked."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "db:\n  driver: postgresql\n  password: hunter2\nredis:\n  url: redis://:pw@h:1/0\n"
    )
    code, out = run("config", "show", str(config))
    assert code == 0
    assert "hunter2" not in out
    assert ":pw@" not in out
    data = yaml.safe_load(out)
    assert data["db"]["password"] == "**********"
    code, out = run("config", "show", "--format", "json", str(config))
    assert json.loads(out)["redis"]["url"] == "**********"


def test_schema_is_json_schema_of_settings() -> None:
    """config schema prints a JSON Schema with every section."""
    code, out = run("config", "schema")
    schema = json.loads(out)
    assert code == 0
    assert set(schema["properties"]) >= {
        "service",
        "log",
        "http",
        "db",
        "storage",
        "messaging",
        "redis",
    }


def test_graph_mermaid(tmp_path: Path) -> None:
    """graph --format mermaid prints a flowchart of the configured providers."""
    config = tmp_path / "c.yaml"
    config.write_text("storage:\n  backend: memory\n")
    code, out = run("graph", "--format", "mermaid", str(config))
    assert code == 0
    assert out.startswith("flowchart LR")
    assert "storage__store" in out


def test_bad_usage_and_bad_class_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """No command prints help (exit 2); a wrong --settings-class is a clear error."""
    assert run()[0] == 2
    code, _ = run("--settings-class", "nope.module:Thing", "config", "schema")
    assert code == 1
    assert "cannot import 'nope.module:Thing'" in capsys.readouterr().err
