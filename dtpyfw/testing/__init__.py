"""Test helpers: settings, containers and real backing services for integration tests."""

from dtpyfw.testing._fake_gcs import find_fake_gcs
from dtpyfw.testing._kafka import (
    bootstrap_of,
    create_topic,
    find_kafka,
    start_kafka_mock,
)
from dtpyfw.testing._kafka_broker import KAFKA_VERSION, KafkaBroker, start_kafka_broker
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
from dtpyfw.testing._s3proxy import find_s3proxy
from dtpyfw.testing._settings import closing_container, embedded_settings
from dtpyfw.testing._vsftpd import start_vsftpd
from dtpyfw.testing._wait import wait_until

__all__ = [
    "BackendUnavailable",
    "KAFKA_VERSION",
    "KafkaBroker",
    "ServiceHandle",
    "bootstrap_of",
    "closing_container",
    "create_topic",
    "embedded_settings",
    "find_fake_gcs",
    "find_ftp",
    "find_ftps",
    "find_gcs",
    "find_kafka",
    "find_postgres",
    "find_redis",
    "find_s3",
    "find_s3proxy",
    "start_ftp_server",
    "start_kafka_broker",
    "start_kafka_mock",
    "start_vsftpd",
    "wait_until",
]
