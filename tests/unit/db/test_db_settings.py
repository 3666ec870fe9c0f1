"""DatabaseSettings: SSL options, the fluent builder, and what reaches the driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import event

from dtpyfw.db import DatabaseReplicaSettings, DatabaseSettings, create_sync_engine

POSTGRES: dict[str, Any] = {"driver": "postgresql", "host": "db.internal", "name": "orders"}


class _StopError(Exception):
    """Raised by a do_connect hook so no network connection is attempted."""


def _connect_params(settings: DatabaseSettings, *, replica: bool = False) -> dict[str, Any]:
    """The keyword arguments psycopg.connect would receive for ``settings``."""
    engine = create_sync_engine(settings, replica=replica)
    captured: dict[str, Any] = {}

    def capture(dialect: object, record: object, cargs: object, cparams: dict[str, Any]) -> None:
        captured.update(cparams)
        raise _StopError

    event.listen(engine, "do_connect", capture)
    try:
        with pytest.raises(_StopError):
            engine.connect()
    finally:
        engine.dispose()
    return captured


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    """Three files standing in for a CA certificate, a client certificate and its key."""
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "client", "key")}
    for path in paths.values():
        path.write_text("-----BEGIN-----\n", encoding="utf-8")
    return paths


def test_ssl_options_reach_the_driver(certs: dict[str, Path]) -> None:
    """sslmode, sslrootcert, sslcert and sslkey are passed to psycopg as given."""
    settings = DatabaseSettings.model_validate(
        {
            **POSTGRES,
            "sslmode": "verify-full",
            "sslrootcert": certs["ca"],
            "sslcert": certs["client"],
            "sslkey": certs["key"],
            "statement_timeout": 1,
        }
    )
    params = _connect_params(settings)
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == str(certs["ca"])
    assert (params["sslcert"], params["sslkey"]) == (str(certs["client"]), str(certs["key"]))
    assert params["options"] == "-c statement_timeout=1000"


def test_ssl_options_apply_to_a_url_too() -> None:
    """With url set, the SSL options still reach the driver."""
    settings = DatabaseSettings(url=SecretStr("postgresql://u@h/db"), sslmode="require")
    assert _connect_params(settings)["sslmode"] == "require"


def test_replica_inherits_the_ssl_options_it_leaves_unset(certs: dict[str, Path]) -> None:
    """A replica without sslrootcert uses the primary's; its own sslmode wins."""
    settings = DatabaseSettings.model_validate(
        {
            **POSTGRES,
            "sslmode": "verify-full",
            "sslrootcert": certs["ca"],
            "replica": {**POSTGRES, "host": "replica.internal", "sslmode": "verify-ca"},
        }
    )
    params = _connect_params(settings, replica=True)
    assert params["host"] == "replica.internal"
    assert params["sslmode"] == "verify-ca"
    assert params["sslrootcert"] == str(certs["ca"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"driver": "sqlite", "sslmode": "require"}, "apply to postgresql only"),
        ({"sslcert": "CLIENT"}, "sslcert and sslkey go together"),
        ({"sslmode": "disable", "sslrootcert": "CA"}, "contradicts sslrootcert"),
        (
            {"sslmode": "require", "query": {"sslmode": "disable"}},
            "both as a setting and in the URL",
        ),
        ({"sslmode": "prefer-not"}, "sslmode"),
        ({"sslrootcert": "/nonexistent/ca.pem"}, "sslrootcert"),
    ],
)
def test_inconsistent_ssl_options_are_refused(
    certs: dict[str, Path], extra: dict[str, Any], message: str
) -> None:
    """SSL options are checked: postgresql only, cert with key, files that exist, set once."""
    files = {"CLIENT": str(certs["client"]), "CA": str(certs["ca"])}
    values = {k: files.get(v, v) if isinstance(v, str) else v for k, v in extra.items()}
    with pytest.raises(ValidationError, match=message):
        DatabaseSettings.model_validate({**POSTGRES, **values})


def test_ssl_option_in_the_url_query_conflicts_with_the_setting() -> None:
    """sslmode in the URL and as a setting is refused rather than silently overridden."""
    with pytest.raises(ValidationError, match="sslmode given both"):
        DatabaseSettings(url=SecretStr("postgresql://h/db?sslmode=disable"), sslmode="require")


def test_builder_produces_the_validated_model() -> None:
    """The fluent builder yields the same settings as model_validate, password included."""
    built = (
        DatabaseSettings.builder()
        .driver("postgresql")
        .host("db.internal")
        .port(6543)
        .user("svc")
        .password("p@ss:/%w0rd")
        .name("orders")
        .pool_size(3)
        .build()
    )
    expected = DatabaseSettings.model_validate(
        {
            "driver": "postgresql",
            "host": "db.internal",
            "port": 6543,
            "user": "svc",
            "password": "p@ss:/%w0rd",
            "name": "orders",
            "pool_size": 3,
        }
    )
    assert isinstance(built, DatabaseSettings)
    assert built == expected
    assert built.url_for(asynchronous=False) == (
        "postgresql+psycopg://svc:p%40ss%3A%2F%25w0rd@db.internal:6543/orders"
    )


def test_builder_refuses_unknown_settings_listing_the_known_ones() -> None:
    """An unknown builder attribute raises AttributeError naming every real setting."""
    builder = DatabaseSettings.builder()
    with pytest.raises(AttributeError, match="no setting 'hots'") as info:
        builder.hots("db")
    for name in ("host", "port", "password", "sslmode", "replica"):
        assert name in str(info.value)


def test_builder_validates_like_the_model() -> None:
    """Values the model refuses are refused by build()."""
    with pytest.raises(ValidationError, match="port"):
        DatabaseSettings.builder().driver("postgresql").port(70000).build()


def test_replica_settings_have_a_builder_too() -> None:
    """DatabaseReplicaSettings.builder() builds a replica for the primary's builder."""
    replica = DatabaseReplicaSettings.builder().driver("postgresql").host("r").build()
    settings = DatabaseSettings.builder().driver("postgresql").replica(replica).build()
    assert settings.replica is not None
    assert settings.replica.host == "r"
