"""Test helpers: settings, containers and real backing services for integration tests."""

from dtpyfw.testing._kafka import (
    Kafka09Broker,
    bootstrap_of,
    create_topic,
    find_kafka,
    start_kafka09,
)
from dtpyfw.testing._launchers import (
    BackendUnavailable,
    ServiceHandle,
    find_ftp,
    find_ftps,
    find_gcs,
    find_postgres,
    find_redis,
    find_s3,
    start_ftp_server,
)
from dtpyfw.testing._settings import closing_container, embedded_settings
from dtpyfw.testing._wait import wait_until

__all__ = [
    "BackendUnavailable",
    "Kafka09Broker",
    "ServiceHandle",
    "bootstrap_of",
    "closing_container",
    "create_topic",
    "embedded_settings",
    "find_ftp",
    "find_ftps",
    "find_gcs",
    "find_kafka",
    "find_postgres",
    "find_redis",
    "find_s3",
    "start_ftp_server",
    "start_kafka09",
    "wait_until",
]
