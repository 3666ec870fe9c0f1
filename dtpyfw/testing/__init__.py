"""Test helpers: settings, containers and real backing services for integration tests."""

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

__all__ = [
    "BackendUnavailable",
    "ServiceHandle",
    "closing_container",
    "embedded_settings",
    "find_ftp",
    "find_ftps",
    "find_gcs",
    "find_postgres",
    "find_redis",
    "find_s3",
    "start_ftp_server",
]
