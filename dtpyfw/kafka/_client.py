"""kafka-python configuration from :class:`~dtpyfw.kafka.KafkaSettings`.

kafka-python is the ``kafka`` extra (supported: 2.3.x; 3.0 failed to talk to
librdkafka's mock cluster when this was written, so the extra pins
``<2.4``). It is imported when a client is created, never at
``import dtpyfw.kafka``.
"""

from __future__ import annotations

__all__ = [
    "admin_config",
    "consumer_config",
    "kafka_errors",
    "producer_config",
    "require_kafka",
]

from types import ModuleType
from typing import Any

from dtpyfw.core._extras import require
from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka._settings import KafkaSettings

_CODECS = {"snappy": "has_snappy", "lz4": "has_lz4", "zstd": "has_zstd", "gzip": "has_gzip"}
_INSTALL = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


def require_kafka() -> ModuleType:
    """The ``kafka`` package, or DependencyMissing naming the extra."""
    return require("kafka", "kafka")


def kafka_errors() -> tuple[type[BaseException], ...]:
    """The exceptions kafka-python raises for broker and network trouble."""
    errors = require("kafka.errors", "kafka")
    return (errors.KafkaError, OSError)


def common_config(settings: KafkaSettings) -> dict[str, Any]:
    """Options every kafka-python client takes: brokers, identity, security, timeouts."""
    config: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": int(settings.request_timeout * 1000),
        "ssl_check_hostname": settings.ssl_check_hostname,
    }
    version = settings.version_tuple()
    if version is not None:
        config["api_version"] = version
    if settings.sasl_mechanism is not None:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            config["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, name)
        if value is not None:
            config[name] = value
    if settings.ssl_password is not None:
        config["ssl_password"] = settings.ssl_password.get_secret_value()
    return config


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """KafkaProducer options: acks, compression, batching, retries, timeouts."""
    producer = settings.producer
    compression = None if producer.compression == "none" else producer.compression
    if compression is not None:
        codec = require("kafka.codec", "kafka")
        if not getattr(codec, _CODECS[compression])():
            raise MessagingError(
                f"kafka.producer.compression is {compression!r} but its codec is not "
                f"installed: pip install {_INSTALL.get(compression, compression)} "
                "(gzip needs nothing)"
            )
    config = common_config(settings)
    # kafka-python requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
    delivery_ms = max(
        int(producer.delivery_timeout * 1000), producer.linger_ms + config["request_timeout_ms"]
    )
    config.update(
        acks=producer.acks,
        compression_type=compression,
        linger_ms=producer.linger_ms,
        batch_size=producer.batch_size,
        max_in_flight_requests_per_connection=producer.max_in_flight,
        retries=producer.retries,
        delivery_timeout_ms=delivery_ms,
        max_block_ms=int(producer.max_block * 1000),
        enable_idempotence=producer.enable_idempotence,
    )
    config.update(overrides)
    return config


def consumer_config(
    settings: KafkaSettings,
    group_id: str | None,
    *,
    auto_offset_reset: str = "earliest",
    **overrides: Any,
) -> dict[str, Any]:
    """KafkaConsumer options: manual commits, group timeouts, fetch sizes."""
    consumer = settings.consumer
    config = common_config(settings)
    session_ms = int(consumer.session_timeout * 1000)
    config.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=int(consumer.heartbeat_interval * 1000),
        max_poll_interval_ms=int(consumer.max_poll_interval * 1000),
        max_poll_records=consumer.max_poll_records,
        fetch_max_wait_ms=int(consumer.fetch_max_wait * 1000),
        # A JoinGroup can wait a whole session for other members: requests must outlast it.
        request_timeout_ms=max(config["request_timeout_ms"], session_ms + 5000),
    )
    version = settings.version_tuple()
    if version is not None and version < (0, 10, 1):
        # Before 0.10.1 the session timeout also bounds the time between polls.
        config["max_poll_interval_ms"] = session_ms
    config.update(overrides)
    return config


def admin_config(settings: KafkaSettings) -> dict[str, Any]:
    """KafkaAdminClient options."""
    return common_config(settings)


def supports_headers(api_version: tuple[int, ...] | None) -> bool:
    """Record headers exist from protocol 0.11 on."""
    return api_version is None or api_version >= (0, 11)
