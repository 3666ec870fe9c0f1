"""pytest fixtures for tests that talk to real servers: PostgreSQL, Redis, S3, GCS, FTP, Kafka.

Session fixtures find (or start) one server per backend with
:mod:`dtpyfw.testing._launchers`; function fixtures hand each test an isolated
slice of it:

* ``postgres_url`` / ``postgres_dsn``: a fresh database, dropped afterwards;
* ``redis_url``: the logical database ``redis_test_db`` (15), flushed before
  and after. Override ``redis_test_db`` in a conftest to reserve another one;
* ``s3_bucket`` / ``gcs_bucket``: a fresh bucket on ``s3_url`` / ``gcs_url``,
  emptied and deleted afterwards; ``s3proxy_bucket`` / ``fake_gcs_bucket``
  the same on s3proxy (which checks signatures) and fake-gcs-server;
* ``kafka_bootstrap`` / ``kafka_test_settings``: the session's Kafka-protocol
  broker (see :mod:`dtpyfw.testing._kafka`) and a ``kafka`` section with
  short, test-friendly timings; ``kafka_broker``: a fresh Apache Kafka 4
  node per test, for kill and restart tests;
* ``ftp_url`` / ``ftps_url`` (pyftpdlib) and ``vsftpd_url`` /
  ``vsftpds_url`` (vsftpd): the server's URL whose path is a fresh
  directory, removed with its content afterwards. An ``ftps://`` URL carries
  the CA file that verifies the server in its ``ca_file`` query parameter.

A backend that cannot be found skips the tests that need it, except when the
``CI`` environment variable is ``true``, ``1`` or ``yes``: there it fails them,
because a CI run that silently skipped its integration tests proves nothing.
"""

from __future__ import annotations

__all__ = [
    "kafka_bootstrap",
    "kafka_broker",
    "kafka_service",
    "kafka_test_settings",
    "ftp_service",
    "ftp_url",
    "ftps_service",
    "ftps_url",
    "fake_gcs_bucket",
    "fake_gcs_service",
    "fake_gcs_url",
    "gcs_bucket",
    "gcs_service",
    "gcs_url",
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

import ftplib
import functools
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import pytest

from dtpyfw.core._extras import require
from dtpyfw.testing._fake_gcs import find_fake_gcs
from dtpyfw.testing._kafka import bootstrap_of, find_kafka
from dtpyfw.testing._kafka_broker import KafkaBroker, start_kafka_broker
from dtpyfw.testing._launchers import (
    BackendUnavailable,
    ServiceHandle,
    find_ftp,
    find_ftps,
    find_gcs,
    find_postgres,
    find_redis,
    find_s3,
    s3_credentials,
)
from dtpyfw.testing._s3proxy import find_s3proxy
from dtpyfw.testing._vsftpd import find_vsftpd, find_vsftpds

_DATABASE_PREFIX = "dtpyfw_t_"
_BUCKET_PREFIX = "dtpyfw-t-"
_FTP_DIR_PREFIX = "dtpyfw-t-"


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[ServiceHandle]:
    """The PostgreSQL server for this test session (see :func:`find_postgres`)."""
    with _find_or_skip(find_postgres) as handle:
        yield handle


@pytest.fixture(scope="session")
def redis_service() -> Iterator[ServiceHandle]:
    """The Redis server for this test session (see :func:`find_redis`)."""
    with _find_or_skip(find_redis) as handle:
        yield handle


@pytest.fixture
def postgres_dsn(postgres_service: ServiceHandle) -> Iterator[str]:
    """A ``postgresql://`` URL of a fresh, empty database, dropped after the test."""
    with _fresh_database(postgres_service.url) as dsn:
        yield dsn


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    """The ``postgres_dsn`` database as a SQLAlchemy URL (``postgresql+psycopg://``)."""
    return postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def redis_test_db() -> int:
    """The Redis logical database reserved for tests; ``redis_url`` flushes it."""
    return 15


@pytest.fixture
def redis_url(redis_service: ServiceHandle, redis_test_db: int) -> Iterator[str]:
    """A URL of the ``redis_test_db`` database, empty at the start, flushed at the end."""
    url = _with_path(redis_service.url, f"/{redis_test_db}")
    _flush_redis_db(url)
    try:
        yield url
    finally:
        _flush_redis_db(url)


@pytest.fixture(scope="session")
def s3_service() -> Iterator[ServiceHandle]:
    """The S3 server for this test session (see :func:`~dtpyfw.testing._launchers.find_s3`)."""
    with _find_or_skip(find_s3) as handle:
        yield handle


@pytest.fixture(scope="session")
def gcs_service() -> Iterator[ServiceHandle]:
    """The GCS emulator for this test session (see ``find_gcs``)."""
    with _find_or_skip(find_gcs) as handle:
        yield handle


@pytest.fixture(scope="session")
def ftp_service() -> Iterator[ServiceHandle]:
    """The plain FTP server for this test session (see ``find_ftp``)."""
    with _find_or_skip(find_ftp) as handle:
        yield handle


@pytest.fixture(scope="session")
def ftps_service() -> Iterator[ServiceHandle]:
    """The FTPS server for this test session (see ``find_ftps``)."""
    with _find_or_skip(find_ftps) as handle:
        yield handle


@pytest.fixture
def s3_url(s3_service: ServiceHandle) -> str:
    """The S3 endpoint URL (credentials, when needed, in its user info)."""
    return s3_service.url


@pytest.fixture
def s3_bucket(s3_url: str) -> Iterator[str]:
    """The name of a fresh, empty bucket on ``s3_url``; emptied and deleted afterwards."""
    with _fresh_s3_bucket(_s3_client(s3_url)) as name:
        yield name


@pytest.fixture
def gcs_url(gcs_service: ServiceHandle) -> str:
    """The GCS emulator's API endpoint URL."""
    return gcs_service.url


@pytest.fixture
def gcs_bucket(gcs_url: str) -> Iterator[str]:
    """The name of a fresh, empty bucket on ``gcs_url``; emptied and deleted afterwards."""
    with _fresh_gcs_bucket(gcs_url) as name:
        yield name


@pytest.fixture
def ftp_url(ftp_service: ServiceHandle) -> Iterator[str]:
    """``ftp_service``'s URL whose path is a fresh directory, removed afterwards."""
    with _fresh_ftp_directory(ftp_service.url) as url:
        yield url


@pytest.fixture
def ftps_url(ftps_service: ServiceHandle) -> Iterator[str]:
    """``ftps_service``'s URL (with ``?ca_file=``) whose path is a fresh directory."""
    with _fresh_ftp_directory(ftps_service.url) as url:
        yield url


def _find_or_skip(find: Callable[[], ServiceHandle]) -> ServiceHandle:
    try:
        return find()
    except BackendUnavailable as exc:
        reason = str(exc)
    # Outside the except block, so the report shows the reason, not a chained traceback.
    if _running_in_ci():
        pytest.fail(f"{reason}\n(CI is set: a missing backend fails the run)", pytrace=False)
    pytest.skip(reason)


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    """Create a uniquely named database on ``server_url``; drop it on exit."""
    require("psycopg", "postgres")
    import psycopg
    from psycopg import sql

    name = f"{_DATABASE_PREFIX}{secrets.token_hex(8)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_path(server_url, f"/{name}")
    finally:
        # FORCE (PostgreSQL 13+) ends sessions a test left open, e.g. a pool.
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _flush_redis_db(url: str) -> None:
    require("redis", "redis")
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path))


@functools.cache
def _s3_client(url: str) -> Any:
    """One client per server URL for the whole session (creating one costs ~50 ms)."""
    boto3 = require("boto3", "storage-s3")
    config = require("botocore.config", "storage-s3")
    endpoint, key, secret = s3_credentials(url)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=config.Config(s3={"addressing_style": "path"}),
    )


@contextmanager
def _fresh_s3_bucket(client: Any) -> Iterator[str]:
    name = f"{_BUCKET_PREFIX}{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        _drop_s3_bucket(client, name)


@contextmanager
def _fresh_gcs_bucket(url: str) -> Iterator[str]:
    name = f"{_BUCKET_PREFIX}{secrets.token_hex(6)}"
    _gcs_request(url, "POST", "/storage/v1/b?project=dtpyfw-tests", {"name": name})
    try:
        yield name
    finally:
        _drop_gcs_bucket(url, name)


def _drop_s3_bucket(client: Any, name: str) -> None:
    """Delete every object, unfinished multipart upload, then the bucket itself."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=name)


def _gcs_request(url: str, method: str, path: str, body: object = None) -> Any:
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the emulator's http:// URL
        url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        payload = response.read()
    return json.loads(payload) if payload else None


def _drop_gcs_bucket(url: str, name: str) -> None:
    bucket = quote(name, safe="")
    token = ""
    while True:
        query = f"?pageToken={quote(token)}" if token else ""
        listing = _gcs_request(url, "GET", f"/storage/v1/b/{bucket}/o{query}") or {}
        for item in listing.get("items", []):
            _gcs_request(url, "DELETE", f"/storage/v1/b/{bucket}/o/{quote(item['name'], safe='')}")
        token = listing.get("nextPageToken", "")
        if not token:
            break
    _gcs_request(url, "DELETE", f"/storage/v1/b/{bucket}")


@contextmanager
def _fresh_ftp_directory(server_url: str) -> Iterator[str]:
    """Create a uniquely named directory on the FTP(S) server; remove it on exit.

    Removal lists with MLSD, or with NLST where the server has no MLSD (vsftpd).
    """
    parts = urlsplit(server_url)
    directory = f"{parts.path.rstrip('/')}/{_FTP_DIR_PREFIX}{secrets.token_hex(6)}"
    with _ftp_session(server_url) as session:
        session.mkd(directory)
    try:
        yield urlunsplit(parts._replace(path=directory))
    finally:
        with _ftp_session(server_url) as session:
            _ftp_rmtree(session, directory)


def _rmtree_by_mlsd(session: Any, directory: str) -> None:
    for name, facts in list(session.mlsd(directory, facts=["type"])):
        kind = facts.get("type", "")
        if kind in ("cdir", "pdir") or name in (".", ".."):
            continue
        path = f"{directory}/{name}"
        if kind == "dir":
            _rmtree_by_mlsd(session, path)
        else:
            session.delete(path)
    session.rmd(directory)


def _ftp_rmtree(session: Any, directory: str) -> None:
    try:
        _rmtree_by_mlsd(session, directory)
    except ftplib.error_perm as exc:
        # vsftpd has no MLSD: 500 to MLSD, 501 to the OPTS MLST ftplib sends first.
        if not str(exc).startswith(("500", "501", "502")):
            raise
        _rmtree_by_nlst(session, directory)


def _rmtree_by_nlst(session: Any, directory: str) -> None:
    """Remove ``directory`` and its content using only NLST, DELE and RMD."""
    for listed in session.nlst(directory):
        name = posixpath.basename(listed)  # some servers answer full paths
        if name in (".", ".."):
            continue
        path = f"{directory}/{name}"
        try:
            session.delete(path)
        except ftplib.error_perm:  # a directory: DELE refuses it
            _rmtree_by_nlst(session, path)
    session.rmd(directory)


@contextmanager
def _ftp_session(url: str) -> Iterator[Any]:
    import ftplib
    import ssl

    parts = urlsplit(url)
    if parts.scheme == "ftps":
        cafile = parse_qs(parts.query).get("ca_file", [None])[0]
        context = ssl.create_default_context(cafile=cafile)
        session: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=10)  # noqa: S321
    else:
        session = ftplib.FTP(timeout=10)  # noqa: S321 - the plain-FTP test server
    with session:
        session.connect(parts.hostname or "127.0.0.1", parts.port or 21)
        session.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
        if isinstance(session, ftplib.FTP_TLS):
            session.prot_p()
        yield session


# -- Kafka ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[ServiceHandle]:
    """The Kafka broker(s) of this test session (see :func:`find_kafka`)."""
    with _find_or_skip(find_kafka) as handle:
        yield handle


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: ServiceHandle) -> str:
    """``host:port[,host:port]`` of the session's brokers."""
    return bootstrap_of(kafka_service)


@pytest.fixture
def kafka_test_settings(kafka_bootstrap: str) -> dict[str, Any]:
    """A ``kafka`` section for the session's brokers with short, test-friendly timings."""
    return {
        "bootstrap_servers": kafka_bootstrap.split(","),
        "producer": {"linger_ms": 0},
        "consumer": {
            "session_timeout": 3.0,
            "heartbeat_interval": 0.3,
            "commit_interval": 0.1,
            "fetch_max_wait": 0.05,
            "revoke_timeout": 5.0,
        },
    }


@pytest.fixture
def kafka_broker() -> Iterator[KafkaBroker]:
    """A fresh Apache Kafka 4 node for one test (it may be killed and restarted)."""
    broker = cast(KafkaBroker, _find_or_skip(start_kafka_broker))  # type: ignore[arg-type]
    try:
        yield broker
    finally:
        broker.stop()


# -- vsftpd, fake-gcs-server, s3proxy ----------------------------------------------------------


@pytest.fixture(scope="session")
def vsftpd_service() -> Iterator[ServiceHandle]:
    """The plain-FTP vsftpd for this test session (see :func:`find_vsftpd`)."""
    with _find_or_skip(find_vsftpd) as handle:
        yield handle


@pytest.fixture(scope="session")
def vsftpds_service() -> Iterator[ServiceHandle]:
    """The FTPS vsftpd for this test session (see :func:`find_vsftpds`)."""
    with _find_or_skip(find_vsftpds) as handle:
        yield handle


@pytest.fixture
def vsftpd_url(vsftpd_service: ServiceHandle) -> Iterator[str]:
    """``vsftpd_service``'s URL whose path is a fresh directory, removed afterwards."""
    with _fresh_ftp_directory(vsftpd_service.url) as url:
        yield url


@pytest.fixture
def vsftpds_url(vsftpds_service: ServiceHandle) -> Iterator[str]:
    """``vsftpds_service``'s URL (with ``?ca_file=``) whose path is a fresh directory."""
    with _fresh_ftp_directory(vsftpds_service.url) as url:
        yield url


@pytest.fixture(scope="session")
def fake_gcs_service() -> Iterator[ServiceHandle]:
    """The fake-gcs-server of this test session (see :func:`find_fake_gcs`)."""
    with _find_or_skip(find_fake_gcs) as handle:
        yield handle


@pytest.fixture
def fake_gcs_url(fake_gcs_service: ServiceHandle) -> str:
    """fake-gcs-server's API endpoint URL."""
    return fake_gcs_service.url


@pytest.fixture
def fake_gcs_bucket(fake_gcs_url: str) -> Iterator[str]:
    """A fresh, empty bucket on ``fake_gcs_url``; emptied and deleted afterwards."""
    with _fresh_gcs_bucket(fake_gcs_url) as name:
        yield name


@pytest.fixture(scope="session")
def s3proxy_service() -> Iterator[ServiceHandle]:
    """The s3proxy of this test session (see :func:`find_s3proxy`)."""
    with _find_or_skip(find_s3proxy) as handle:
        yield handle


@pytest.fixture
def s3proxy_url(s3proxy_service: ServiceHandle) -> str:
    """s3proxy's endpoint URL with its identity and credential in the user info."""
    return s3proxy_service.url


@pytest.fixture
def s3proxy_bucket(s3proxy_url: str) -> Iterator[str]:
    """A fresh, empty bucket on ``s3proxy_url``; emptied and deleted afterwards."""
    with _fresh_s3_bucket(_dtpyfw_s3_client(s3proxy_url)) as name:
        yield name


@functools.cache
def _dtpyfw_s3_client(url: str) -> Any:
    """dtpyfw's own S3 client for ``url`` (one per session).

    Not ``_backends._s3_client``: with botocore's default checksums s3proxy
    refuses uploads and DeleteObjects, which dtpyfw's client configures away.
    """
    from dtpyfw.storage._s3 import create_s3_client
    from dtpyfw.storage._settings import S3StoreSettings

    endpoint, key, secret = s3_credentials(url)
    settings = S3StoreSettings(
        bucket="unused",
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id=key,
        secret_access_key=secret,
        addressing_style="path",
    )
    return create_s3_client(settings)
