"""HttpSettings and DownstreamSettings: defaults, validation and secret headers."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.http import DownstreamSettings, HttpSettings


def test_defaults() -> None:
    """Empty settings give the documented defaults."""
    settings = HttpSettings()
    assert settings.timeout == 10
    assert settings.connect_timeout == 5
    assert settings.retry == RetryPolicy()
    assert settings.retry.attempts == 3
    assert settings.retry_statuses == [502, 503, 504]
    assert settings.propagate_headers is True
    assert settings.downstreams == {}


@pytest.mark.parametrize("model", [HttpSettings, DownstreamSettings])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    """Each settings field carries a description for generated docs."""
    assert all(field.description for field in model.model_fields.values())


def test_every_http_settings_field_has_a_default() -> None:
    """HttpSettings can be built from nothing."""
    assert not any(field.is_required() for field in HttpSettings.model_fields.values())


def test_downstream_from_plain_data() -> None:
    """Nested downstreams and retry overrides validate from dicts, as loaded from YAML."""
    settings = HttpSettings.model_validate(
        {
            "retry": {"attempts": 5},
            "downstreams": {
                "billing": {
                    "base_url": "https://billing.internal/api",
                    "timeout": 2,
                    "headers": {"X-Api-Key": "k"},
                    "verify": False,
                    "retry": {"attempts": 1},
                }
            },
        }
    )
    billing = settings.downstreams["billing"]
    assert settings.retry.attempts == 5
    assert str(billing.base_url) == "https://billing.internal/api"
    assert billing.timeout == 2
    assert billing.headers["X-Api-Key"].get_secret_value() == "k"
    assert billing.verify is False
    assert billing.retry == RetryPolicy(attempts=1)


@pytest.mark.parametrize("url", ["ftp://files.internal", "not a url", "http://", ""])
def test_bad_base_url_is_a_validation_error(url: str) -> None:
    """base_url must be an http:// or https:// URL with a host."""
    with pytest.raises(ValidationError) as info:
        HttpSettings.model_validate({"downstreams": {"svc": {"base_url": url}}})
    assert info.value.errors()[0]["loc"] == ("downstreams", "svc", "base_url")


def test_base_url_is_required() -> None:
    """A downstream without base_url is rejected."""
    with pytest.raises(ValidationError, match="base_url"):
        DownstreamSettings.model_validate({})


@pytest.mark.parametrize(
    "data",
    [
        {"timeout": 0},
        {"connect_timeout": -1},
        {"retry_statuses": [99]},
        {"retry_statuses": [600]},
        {"retry": {"attempts": 0}},
        {"unknown": 1},
        {"downstreams": {"svc": {"base_url": "http://svc", "timeout": 0}}},
        {"downstreams": {"svc": {"base_url": "http://svc", "extra": 1}}},
    ],
)
def test_invalid_values_are_rejected(data: dict[str, object]) -> None:
    """Non-positive timeouts, impossible statuses and unknown keys fail validation."""
    with pytest.raises(ValidationError):
        HttpSettings.model_validate(data)


def test_header_values_stay_out_of_reprs() -> None:
    """Downstream header values never appear in repr, str or a JSON dump."""
    settings = HttpSettings.model_validate(
        {"downstreams": {"svc": {"base_url": "http://svc", "headers": {"X-Api-Key": "s3cr3t"}}}}
    )
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cr3t" not in text
    assert "X-Api-Key" in repr(settings)
