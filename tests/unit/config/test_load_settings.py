"""load_settings: sources, precedence, interpolation and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from dtpyfw.config import ConfigError, Settings, load_settings
from dtpyfw.config._yaml import parse_yaml

NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(issue) for issue in exc.value.issues]


def test_defaults_without_a_file_give_core_sections_only() -> None:
    """With no file and no environment, only service/log/http exist; subsystems are off."""
    settings = load_settings(env=NO_ENV, env_file=None)
    assert settings.service.name == "dtpyfw-service"
    assert settings.db is None
    assert settings.storage is None


def test_empty_section_enables_embedded_default(tmp_path: Path) -> None:
    """`db:` with nothing under it turns the database on with its SQLite default."""
    settings = load_settings(write(tmp_path, "db:\nstorage:\n"), env=NO_ENV, env_file=None)
    assert settings.db is not None
    assert settings.db.family == "sqlite"
    assert settings.storage is not None
    assert settings.storage.backend == "local"


def test_precedence_yaml_dotenv_environment_overrides(tmp_path: Path) -> None:
    """defaults < YAML < .env < environment < overrides, key by key."""
    config = write(
        tmp_path, "db:\n  pool_size: 1\n  max_overflow: 1\n  pool_timeout: 1\n  echo: false\n"
    )
    dotenv = write(tmp_path, "DTPYFW_DB__MAX_OVERFLOW=2\nDTPYFW_DB__POOL_TIMEOUT=2\n", ".env")
    env = {"DTPYFW_DB__POOL_TIMEOUT": "3", "DTPYFW_DB__ECHO": "true"}
    settings = load_settings(config, env=env, env_file=dotenv, overrides={"db.echo": False})
    assert settings.db is not None
    assert (settings.db.pool_size, settings.db.max_overflow) == (1, 2)
    assert settings.db.pool_timeout == 3
    assert settings.db.echo is False


def test_nested_overrides_mapping_merges(tmp_path: Path) -> None:
    """Overrides given as a nested mapping merge into the section instead of replacing it."""
    config = write(tmp_path, "db:\n  pool_size: 4\n")
    settings = load_settings(config, env=NO_ENV, env_file=None, overrides={"db": {"echo": True}})
    assert settings.db is not None
    assert (settings.db.pool_size, settings.db.echo) == (4, True)


def test_environment_swaps_storage_backend(tmp_path: Path) -> None:
    """DTPYFW_STORAGE__BACKEND switches backend even though YAML set local-only keys."""
    config = write(tmp_path, "storage:\n  backend: local\n  root: /srv/objects\n")
    settings = load_settings(config, env={"DTPYFW_STORAGE__BACKEND": "memory"}, env_file=None)
    assert settings.storage is not None
    assert settings.storage.backend == "memory"


def test_environment_json_values_for_complex_fields() -> None:
    """A JSON object in an environment variable fills a dict field."""
    env = {"DTPYFW_DB": "{}", "DTPYFW_DB__QUERY": '{"sslmode": "require"}'}
    settings = load_settings(env=env, env_file=None)
    assert settings.db is not None
    assert settings.db.query == {"sslmode": "require"}


def test_unrelated_prefixed_environment_is_ignored() -> None:
    """Variables such as DTPYFW_TEST_POSTGRES_URL are not settings and are not errors."""
    settings = load_settings(
        env={"DTPYFW_TEST_POSTGRES_URL": "x", "DTPYFW_CONFIG_FILEX": "y"}, env_file=None
    )
    assert settings.db is None


def test_config_file_variable_names_the_file(tmp_path: Path) -> None:
    """$DTPYFW_CONFIG_FILE is read when no path is given."""
    config = write(tmp_path, "service:\n  name: from-file\n")
    settings = load_settings(env={"DTPYFW_CONFIG_FILE": str(config)}, env_file=None)
    assert settings.service.name == "from-file"


def test_interpolation_with_defaults_and_escapes(tmp_path: Path) -> None:
    """${VAR}, ${VAR:-default} and $$ resolve on parsed scalars only."""
    config = write(
        tmp_path,
        "service:\n  name: ${NAME}\n  version: ${VERSION:-1.2.3}\n  environment: cost-$$5\n"
        "db:\n  password: ${DBPASS}\n",
    )
    settings = load_settings(config, env={"NAME": "svc", "DBPASS": "p@ss:w/rd%"}, env_file=None)
    assert settings.service.name == "svc"
    assert settings.service.version == "1.2.3"
    assert settings.service.environment == "cost-$5"
    assert settings.db is not None
    assert isinstance(settings.db.password, SecretStr)
    assert settings.db.password.get_secret_value() == "p@ss:w/rd%"


def test_interpolation_cannot_inject_yaml(tmp_path: Path) -> None:
    """A variable holding YAML syntax stays a plain string value."""
    config = write(tmp_path, "service:\n  name: ${NAME}\n")
    settings = load_settings(config, env={"NAME": "x\ndb:\n  echo: true"}, env_file=None)
    assert settings.service.name == "x\ndb:\n  echo: true"
    assert settings.db is None


def test_every_problem_reported_at_once_with_file_line_and_path(tmp_path: Path) -> None:
    """Unknown keys, wrong types and missing variables all appear in one ConfigError."""
    config = write(
        tmp_path,
        "service:\n  name: demo\ndb:\n  pool_siz: 5\n  pool_size: ten\n  password: ${NOPE}\n"
        "log:\n  level: LOUD\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(config, env=NO_ENV, env_file=None)
    text = problems(exc)
    assert f"{config}:4: db.pool_siz: unknown key 'pool_siz' (did you mean 'pool_size'?)" in text[0]
    assert text[1].startswith(f"{config}:5: db.pool_size: input should be a valid integer")
    assert text[1].endswith("got 'ten'")
    assert text[2].startswith(f"{config}:6: db.password: environment variable NOPE is not set")
    assert text[3].startswith(f"{config}:8: log.level: unknown log level 'LOUD'")
    assert len(text) == 4


def test_unknown_top_level_section_is_an_error(tmp_path: Path) -> None:
    """A misspelt section name is reported, not ignored."""
    config = write(tmp_path, "sevice:\n  name: x\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config, env=NO_ENV, env_file=None)
    assert problems(exc) == [
        f"{config}:1: sevice: unknown key 'sevice' (did you mean 'service'?); "
        "expected one of: db, ftp, http, kafka, log, messaging, redis, security, service, "
        "storage, worker"
    ]


def test_unknown_key_from_environment_names_the_variable() -> None:
    """An unknown key inside a known section, set from the environment, is named as such."""
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"DTPYFW_DB__POOL_SIZ": "3"}, env_file=None)
    assert problems(exc)[0].startswith(
        "environment variable DTPYFW_DB__POOL_SIZ: db.pool_siz: unknown key 'pool_siz'"
    )


def test_secret_values_are_masked_in_errors(tmp_path: Path) -> None:
    """A bad value for a secret field never appears in the error text."""
    config = write(tmp_path, "redis:\n  password: [hunter2]\ndb:\n  url: 12345\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config, env=NO_ENV, env_file=None)
    text = str(exc.value)
    assert "hunter2" not in text
    assert "12345" not in text
    assert "**********" in text


def test_unknown_backend_points_at_backend_key(tmp_path: Path) -> None:
    """A wrong storage backend names storage.backend and the allowed values."""
    config = write(tmp_path, "storage:\n  backend: s4\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config, env=NO_ENV, env_file=None)
    assert problems(exc) == [
        f"{config}:2: storage.backend: backend must be one of: local, memory, s3, gcs; got 's4'"
    ]


def test_invalid_json_in_environment_is_reported() -> None:
    """A variable that starts like JSON but is not valid JSON is an error, not a string."""
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"DTPYFW_DB__QUERY": "{oops"}, env_file=None)
    assert "environment variable DTPYFW_DB__QUERY: db.query: invalid JSON" in problems(exc)[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "file is empty; expected a mapping of sections"),
        (b"# only a comment\n", "file is empty; expected a mapping of sections"),
        (b"- a\n- b\n", ":1: expected a mapping at the top level, got a list"),
        (b"just text\n", ":1: expected a mapping at the top level, got a scalar value"),
        (b"db:\n  echo: [1,\n", ":3: malformed YAML"),
        (b"db: {}\ndb: {}\n", ":2: db: duplicate key"),
        (b"service:\n  name: caf\xe9\n", ":2: not valid UTF-8 (byte 0xe9 at offset 20)"),
    ],
    ids=["empty", "comment-only", "list", "scalar", "malformed", "duplicate", "non-utf8"],
)
def test_bad_files(tmp_path: Path, content: bytes, expected: str) -> None:
    """Each malformed file gives one issue naming the file and, where known, the line."""
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_settings(config, env=NO_ENV, env_file=None)
    assert len(exc.value.issues) == 1
    assert str(config) in problems(exc)[0]
    assert expected in problems(exc)[0]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A directory path is rejected with a message saying so."""
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, env=NO_ENV, env_file=None)
    assert problems(exc) == [f"{tmp_path}: is a directory; expected a YAML file"]


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is an error, never a silent fallback to defaults."""
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "nope.yaml", env=NO_ENV, env_file=None)
    assert problems(exc) == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_yaml_anchors_and_merge_keys() -> None:
    """Merge keys resolve and the lines of merged keys are known."""
    document = parse_yaml("base: &b\n  echo: true\ndb:\n  <<: *b\n  pool_size: 2\n", "x.yaml")
    assert document.data["db"] == {"echo": True, "pool_size": 2}
    assert document.lines[("db", "pool_size")] == 5


def test_subclassed_settings_add_sections(tmp_path: Path) -> None:
    """Services subclass Settings; their sections load and validate like built-in ones."""
    from pydantic import BaseModel, ConfigDict

    class Billing(BaseModel):
        model_config = ConfigDict(extra="forbid")
        currency: str = "EUR"

    class MySettings(Settings):
        billing: Billing = Billing()

    config = write(tmp_path, "billing:\n  currency: USD\n")
    settings = load_settings(config, env=NO_ENV, env_file=None, settings_class=MySettings)
    assert settings.billing.currency == "USD"
    with pytest.raises(ConfigError) as exc:
        load_settings(
            write(tmp_path, "billing:\n  curency: USD\n", "b.yaml"),
            env=NO_ENV,
            env_file=None,
            settings_class=MySettings,
        )
    assert "billing.curency: unknown key 'curency' (did you mean 'currency'?)" in problems(exc)[0]


def test_plain_settings_constructor_still_reads_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings() without load_settings behaves like any pydantic-settings model."""
    monkeypatch.setenv("DTPYFW_SERVICE__NAME", "from-env")
    assert Settings().service.name == "from-env"
