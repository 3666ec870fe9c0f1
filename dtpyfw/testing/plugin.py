"""The dtpyfw pytest plugin (``pytest11`` entry point): container, override, logs, backends.

Importing this module must stay cheap and need no optional extra: it loads for
every pytest run of every project that installs dtpyfw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dtpyfw.testing._backends import (
    fake_gcs_bucket,
    fake_gcs_service,
    fake_gcs_url,
    ftp_service,
    ftp_url,
    ftps_service,
    ftps_url,
    gcs_bucket,
    gcs_service,
    gcs_url,
    kafka_bootstrap,
    kafka_broker,
    kafka_service,
    kafka_test_settings,
    postgres_dsn,
    postgres_service,
    postgres_url,
    redis_service,
    redis_test_db,
    redis_url,
    s3_bucket,
    s3_service,
    s3_url,
    s3proxy_bucket,
    s3proxy_service,
    s3proxy_url,
    vsftpd_service,
    vsftpd_url,
    vsftpds_service,
    vsftpds_url,
)

if TYPE_CHECKING:
    from dtpyfw.config import Settings
    from dtpyfw.container import ServiceContainerInstance

__all__ = [
    "capture_logs",
    "dtpyfw_container",
    "dtpyfw_settings",
    "fake_gcs_bucket",
    "fake_gcs_service",
    "fake_gcs_url",
    "ftp_service",
    "ftp_url",
    "ftps_service",
    "ftps_url",
    "gcs_bucket",
    "gcs_service",
    "gcs_url",
    "kafka_bootstrap",
    "kafka_broker",
    "kafka_service",
    "kafka_test_settings",
    "override",
    "postgres_dsn",
    "postgres_service",
    "postgres_url",
    "redis_service",
    "redis_test_db",
    "redis_url",
    "s3_bucket",
    "s3_service",
    "s3_url",
    "s3proxy_bucket",
    "s3proxy_service",
    "s3proxy_url",
    "vsftpd_service",
    "vsftpd_url",
    "vsftpds_service",
    "vsftpds_url",
]


@pytest.fixture
def dtpyfw_settings(tmp_path: Path) -> Settings:
    """Embedded settings in a temporary directory: SQLite, memory storage and bus."""
    from dtpyfw.testing._settings import embedded_settings

    return embedded_settings(tmp_path)


@pytest.fixture
def dtpyfw_container(dtpyfw_settings: Settings) -> Iterator[ServiceContainerInstance]:
    """A ServiceContainer built from ``dtpyfw_settings``; its resources close afterwards."""
    from dtpyfw.testing._settings import closing_container

    with closing_container(dtpyfw_settings) as container:
        yield container


@pytest.fixture
def override(dtpyfw_container: ServiceContainerInstance) -> Iterator[Callable[..., Any]]:
    """``override(storage=fake)`` on the test's container, undone when the test ends."""
    handles: list[Any] = []

    def apply(*args: Any, **values: Any) -> Any:
        handle = dtpyfw_container.override(*args, **values)
        handles.append(handle)
        return handle

    yield apply
    for handle in reversed(handles):
        handle.reset()


@pytest.fixture
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Records logged during the test, as the dicts the JSON formatter would emit."""
    from dtpyfw.log import capture_logs as _capture

    with _capture() as records:
        yield records


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test whose Kafka broker died says so, instead of only showing a timeout."""
    report = yield
    if report.failed:
        from dtpyfw.testing._kafka_broker import dead_brokers

        for why in dead_brokers():
            report.sections.append(("dtpyfw: a Kafka broker of this run died", why))
    return report
