"""LogSettings: defaults, validation and secret handling."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from dtpyfw.log import FileLogSettings, LogSettings, ShippingSettings, SyslogSettings


def test_defaults_give_console_logs_on_stdout_at_info() -> None:
    """The embedded-mode default is INFO console lines on stdout and nothing else."""
    settings = LogSettings()
    assert settings.level == "INFO"
    assert settings.format == "console"
    assert settings.stdout is True
    assert settings.file is None
    assert settings.syslog is None
    assert settings.shipping is None
    assert settings.loggers == {}
    assert settings.redact_keys == []


def test_level_is_case_insensitive_and_normalised_to_upper() -> None:
    """Level names are accepted in any case and stored upper-case."""
    assert LogSettings(level=" debug ").level == "DEBUG"
    assert LogSettings(loggers={"sqlalchemy": "warning"}).loggers == {"sqlalchemy": "WARNING"}


def test_unknown_level_is_rejected_with_the_known_names() -> None:
    """A bad root level fails validation and the message lists the valid names."""
    with pytest.raises(ValidationError) as excinfo:
        LogSettings(level="LOUD")
    message = str(excinfo.value)
    assert "unknown log level 'LOUD'" in message
    assert "WARNING" in message


def test_unknown_per_logger_level_is_rejected() -> None:
    """A bad level in ``loggers`` fails validation and names the key."""
    with pytest.raises(ValidationError) as excinfo:
        LogSettings(loggers={"app": "chatty"})
    assert excinfo.value.errors()[0]["loc"] == ("loggers",)


def test_unknown_keys_are_forbidden() -> None:
    """A typo in a key is an error, not silently ignored."""
    with pytest.raises(ValidationError):
        LogSettings.model_validate({"levle": "INFO"})
    with pytest.raises(ValidationError):
        ShippingSettings.model_validate({"batchsize": 3})


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost:514", ("localhost", 514)),
        ("10.0.0.7:1514", ("10.0.0.7", 1514)),
        ("[::1]:514", ("::1", 514)),
        ("/dev/log", "/dev/log"),
    ],
)
def test_syslog_address_is_host_port_or_socket_path(
    address: str, expected: str | tuple[str, int]
) -> None:
    """``host:port`` becomes a tuple and a path stays a unix socket path."""
    assert SyslogSettings(address=address).socket_address() == expected


@pytest.mark.parametrize("address", ["localhost", "localhost:http", ":514", "host:70000"])
def test_bad_syslog_address_is_rejected(address: str) -> None:
    """A syslog address that is neither ``host:port`` nor a path fails validation."""
    with pytest.raises(ValidationError, match="host:port"):
        SyslogSettings(address=address)


def test_syslog_facility_is_validated_and_lowered() -> None:
    """Facility names are checked against syslog's list."""
    assert SyslogSettings(facility="LOCAL3").facility == "local3"
    with pytest.raises(ValidationError, match="unknown syslog facility"):
        SyslogSettings(facility="kitchen")


@pytest.mark.parametrize("url", ["ftp://logs.example.com/", "/relative/path", "http://"])
def test_shipping_url_must_be_absolute_http(url: str) -> None:
    """Only absolute http(s) URLs are accepted for shipping."""
    with pytest.raises(ValidationError):
        ShippingSettings(url=url)


def test_shipping_header_values_never_leak() -> None:
    """Header values are secrets: masked in repr, str and JSON dumps."""
    settings = LogSettings(
        shipping=ShippingSettings(headers={"Authorization": SecretStr("Bearer s3cr3t")})
    )
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings)
    assert "s3cr3t" not in settings.model_dump_json()
    assert settings.shipping is not None
    assert settings.shipping.headers["Authorization"].get_secret_value() == "Bearer s3cr3t"


def test_shipping_limits_are_validated() -> None:
    """Zero batch size, queue size or interval is refused."""
    for bad in ({"batch_size": 0}, {"queue_size": 0}, {"flush_interval": 0}, {"timeout": 0}):
        with pytest.raises(ValidationError):
            ShippingSettings.model_validate(bad)


@pytest.mark.parametrize("model", [LogSettings, FileLogSettings, SyslogSettings, ShippingSettings])
def test_every_field_has_a_default_and_a_description(model: type[BaseModel]) -> None:
    """Each field documents itself, feeding the JSON schema and the example config."""
    model()  # every field has a default
    schema: dict[str, Any] = model.model_json_schema()
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{model.__name__}.{name} has no description"
