"""FtpClient against real servers in their own processes, over plain FTP and FTPS (explicit TLS).

The contract runs on two servers: pyftpdlib and vsftpd (Debian's FTP server),
which words its refusals differently, lacks MLSD and requires TLS on data
connections. Tests that need what only pyftpdlib offers (the HASH command of
``start_ftp_server(hash_command=True)``) run on pyftpdlib alone; each says so.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dtpyfw.config import Settings
from dtpyfw.container import ServiceContainer
from dtpyfw.ftp import (
    AsyncFtpClient,
    FtpAuthError,
    FtpClient,
    FtpConnectionError,
    FtpError,
    FtpIntegrityError,
    FtpNotFound,
    FtpPoolTimeout,
    FtpSettings,
    FtpTlsError,
    InvalidPath,
)
from dtpyfw.log import capture_logs
from dtpyfw.testing._backends import _ftp_session
from dtpyfw.testing._launchers import ServiceHandle, start_ftp_server

FAST_RETRY = {"attempts": 3, "initial_delay": 0.01, "jitter": 0}


#: The URL fixture of every server the contract runs on: pyftpdlib, then vsftpd.
SERVERS = ["ftp", "ftps", "vsftpd", "vsftpds"]
TLS_SERVERS = ["ftps", "vsftpds"]
PLAIN_SERVERS = ["ftp", "vsftpd"]


@pytest.fixture(params=SERVERS)
def url(request: pytest.FixtureRequest) -> str:
    """A fresh directory on each test server in turn (FTP and FTPS, pyftpdlib and vsftpd)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=TLS_SERVERS)
def tls_url(request: pytest.FixtureRequest) -> str:
    """A fresh directory on each FTPS test server; its URL carries the CA file."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=PLAIN_SERVERS)
def plain_url(request: pytest.FixtureRequest) -> str:
    """A fresh directory on each plain-FTP test server."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def client(url: str) -> Iterator[FtpClient]:
    """A client rooted in the test's directory, closed afterwards."""
    with FtpClient(FtpSettings.from_url(url, retry=FAST_RETRY, timeout=5)) as ftp:
        yield ftp


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never sends a greeting."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def raw_names(url: str, directory: str = "") -> list[str]:
    """Every name in the test directory as the server lists it, hidden temp files included.

    NLST, not MLSD: vsftpd has no MLSD (its launcher lists dot files on NLST).
    """
    from urllib.parse import urlsplit

    path = urlsplit(url).path.rstrip("/") + ("/" + directory if directory else "")
    with _ftp_session(url) as session:
        names = (posixpath.basename(name) for name in session.nlst(path))
        return sorted(name for name in names if name not in (".", ".."))


class Breaks(io.RawIOBase):
    """A one-shot stream that gives ``good`` bytes, then fails like a dropped client."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` until ``good`` bytes were given, then raise."""
        if self.left == 0:
            raise ConnectionResetError("the uploader went away")
        count = min(len(buffer), self.left)
        memoryview(buffer)[:count] = b"p" * count
        self.left -= count
        return count


def test_round_trip_of_every_operation(client: FtpClient, tmp_path: Path) -> None:
    """upload, list, walk, stat, exists, modified, download, rename, delete, makedirs, rmtree."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    source = tmp_path / "report.csv"
    source.write_bytes(b"a,b\n" * 50_000)
    entry = client.upload(source, "in/2024/report.csv")  # parents are created
    assert (entry.path, entry.size, entry.is_file) == ("in/2024/report.csv", 200_000, True)
    client.upload(io.BytesIO(b"{}"), "in/meta.json")
    assert [(e.name, e.is_dir) for e in client.list("in")] == [("2024", True), ("meta.json", False)]
    assert list(client.walk()) == [
        ("", ["in"], []),
        ("in", ["2024"], ["meta.json"]),
        ("in/2024", [], ["report.csv"]),
    ]
    assert client.exists("in/2024")
    assert not client.exists("in/nope")
    assert before <= client.modified("in/meta.json") <= datetime.now(UTC) + timedelta(seconds=5)
    target = tmp_path / "copy.csv"
    assert client.download("in/2024/report.csv", target).size == 200_000
    assert target.read_bytes() == source.read_bytes()
    client.rename("in/meta.json", "in/2024/meta.json")
    assert client.stat("in/2024/meta.json").size == 2
    client.delete("in/2024/meta.json")
    client.makedirs("out/a/b")
    client.makedirs("out/a/b")  # existing directories are fine
    client.rmtree("in")
    assert [e.path for e in client.list()] == ["out"]


def test_missing_paths_raise_ftp_not_found(client: FtpClient, tmp_path: Path) -> None:
    """stat, delete, download, rename and rmtree of a missing path raise FtpNotFound."""
    target = tmp_path / "keep.txt"
    target.write_bytes(b"previous")
    for call in (
        lambda: client.stat("ghost.txt"),
        lambda: client.delete("ghost.txt"),
        lambda: client.download("ghost.txt", target),
        lambda: client.rename("ghost.txt", "other.txt"),
        lambda: client.rmtree("ghost"),
        lambda: client.list("ghost"),
    ):
        with pytest.raises(FtpNotFound):
            call()
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_paths_under_a_missing_directory_are_not_found(client: FtpClient, tmp_path: Path) -> None:
    """exists is False; stat, modified, delete, download, rename, list, rmtree raise FtpNotFound.

    vsftpd refuses these with its own words (``550 Failed to change directory.``):
    "not found" comes from the reply code and a follow-up listing, not the wording.
    """
    client.makedirs("present")  # not by upload: this test must not depend on that
    client.upload(io.BytesIO(b"x"), "present/file.txt")
    target = tmp_path / "keep.txt"
    target.write_bytes(b"previous")
    calls: list[Callable[[str], object]] = [
        client.stat,
        client.modified,
        client.delete,
        lambda path: client.download(path, target),
        lambda path: client.rename(path, "present/renamed.txt"),
        client.list,
        client.rmtree,
    ]
    for path in ("missing-dir/x", "missing-dir/deeper/x", "present/missing-dir/x"):
        assert not client.exists(path)
        for call in calls:
            with pytest.raises(FtpNotFound):
                call(path)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert [e.path for e in client.list("present")] == ["present/file.txt"]


def test_upload_creates_every_missing_parent_directory(client: FtpClient, url: str) -> None:
    """Uploading to a/b/c/file.txt creates a, a/b and a/b/c (vsftpd answers STOR with 553)."""
    entry = client.upload(io.BytesIO(b"deep"), "a/b/c/file.txt")
    assert (entry.path, entry.size) == ("a/b/c/file.txt", 4)
    assert list(client.walk("a")) == [
        ("a", ["b"], []),
        ("a/b", ["c"], []),
        ("a/b/c", [], ["file.txt"]),
    ]
    client.upload(io.BytesIO(b"next"), "a/b/other/file.txt")  # one parent exists, one not
    assert client.stat("a/b/other/file.txt").size == 4
    assert raw_names(url, "a/b/c") == ["file.txt"]  # no temp file left behind


def test_a_refusal_for_a_present_path_is_not_not_found(client: FtpClient, tmp_path: Path) -> None:
    """A refused command on a path that exists is an FtpError, never FtpNotFound.

    The server answers 550/553 as it does for a missing path; the follow-up
    listing finds the path, so no directory is created and nothing is "missing".
    """
    client.upload(io.BytesIO(b"file"), "plain.txt")
    client.makedirs("folder")
    with pytest.raises(FtpError) as under_a_file:
        client.upload(io.BytesIO(b"x"), "plain.txt/child.txt")  # a file is no directory
    assert not isinstance(under_a_file.value, FtpNotFound)
    with pytest.raises(FtpError, match="is a directory") as deleted:
        client.delete("folder")
    assert not isinstance(deleted.value, FtpNotFound)
    with pytest.raises(FtpError, match="is a directory") as downloaded:
        client.download("folder", tmp_path / "folder")
    assert not isinstance(downloaded.value, FtpNotFound)
    assert client.stat("plain.txt").size == 4
    assert client.stat("folder").is_dir


async def test_async_twin_reports_missing_directories_alike(url: str, tmp_path: Path) -> None:
    """The async client shares the sync one's probes: same answers under a missing directory."""
    async with AsyncFtpClient(FtpClient(FtpSettings.from_url(url))) as client:
        assert not await client.exists("missing-dir/x")
        with pytest.raises(FtpNotFound):
            await client.stat("missing-dir/x")
        with pytest.raises(FtpNotFound):
            await client.delete("missing-dir/x")
        with pytest.raises(FtpNotFound):
            await client.download("missing-dir/x", tmp_path / "x")
        await client.upload(io.BytesIO(b"async"), "made/for/it.txt")
        assert (await client.stat("made/for/it.txt")).size == 5


def test_paths_cannot_leave_the_root(client: FtpClient, url: str) -> None:
    """'..' past the root is InvalidPath; a leading '/' means the root itself."""
    for path in ("../outside.txt", "a/../../outside.txt"):
        with pytest.raises(InvalidPath, match="leaves the root"):
            client.upload(io.BytesIO(b"x"), path)
    client.upload(io.BytesIO(b"x"), "/at-root.txt")
    client.upload(io.BytesIO(b"y"), "a/../inside.txt")
    assert raw_names(url) == ["at-root.txt", "inside.txt"]
    with pytest.raises(InvalidPath):
        client.rmtree("/")


def test_broken_upload_leaves_nothing_at_the_target(client: FtpClient, url: str) -> None:
    """A source failing mid-upload raises its own error; neither target nor temp file remains."""
    client.upload(io.BytesIO(b"old content"), "doc.bin")
    with pytest.raises(ConnectionResetError, match="uploader went away"):
        client.upload(Breaks(600_000), "doc.bin")  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        client.upload(Breaks(10), "new.bin")  # type: ignore[arg-type]
    assert raw_names(url) == ["doc.bin"]
    assert client.stat("doc.bin").size == len(b"old content")


def test_wrong_password_is_an_auth_error_not_retried(url: str) -> None:
    """A refused login raises FtpAuthError at once: no retry, no generic error."""
    settings = FtpSettings.from_url(url, password="wrong", retry=FAST_RETRY)
    with (
        capture_logs(logger="dtpyfw.ftp") as records,
        FtpClient(settings) as client,
        pytest.raises(FtpAuthError, match="refused the login"),
    ):
        client.list()
    assert records == []


def test_untrusted_certificate_is_refused_by_default(tls_url: str) -> None:
    """FTPS verifies the certificate: without the test CA the handshake fails (not retried)."""
    settings = FtpSettings.from_url(tls_url, ca_file=None, retry=FAST_RETRY)
    assert settings.tls_verify
    with FtpClient(settings) as client, pytest.raises(FtpTlsError, match="not trusted"):
        client.ping()
    unverified = FtpSettings.from_url(tls_url, ca_file=None, tls_verify=False)
    with FtpClient(unverified) as client:
        client.ping()


def test_plain_ftp_to_a_tls_only_server_is_refused(tls_url: str) -> None:
    """The FTPS test servers require TLS: a plain client cannot log in."""
    plain = FtpSettings.from_url(tls_url, tls=False, retry=FAST_RETRY)
    with FtpClient(plain) as client, pytest.raises(FtpError):
        client.ping()


def test_connect_timeout_is_applied_and_retried(silent_port: int) -> None:
    """A server that never greets fails each attempt after `timeout`, then FtpConnectionError."""
    settings = FtpSettings(
        host="127.0.0.1",
        port=silent_port,
        timeout=0.3,
        retry={"attempts": 2, "initial_delay": 0, "jitter": 0},
    )
    started = time.monotonic()
    with (
        capture_logs(logger="dtpyfw.ftp") as records,
        FtpClient(settings) as client,
        pytest.raises(FtpConnectionError, match="timed out"),
    ):
        client.list()
    assert time.monotonic() - started < 2 * 0.3 + 2.0
    assert [r["attempt"] for r in records] == [1]


def test_pool_reuses_and_bounds_connections(url: str) -> None:
    """Calls share pooled connections; when all are busy a call waits, then FtpPoolTimeout."""
    settings = FtpSettings.from_url(url, pool_size=1, pool_timeout=0.3)
    reading, gate = threading.Event(), threading.Event()

    class Slow(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            reading.set()  # the upload holds the only connection now
            gate.wait(10)
            return 0

    with FtpClient(settings) as client:
        for index in range(5):
            client.upload(io.BytesIO(b"x"), f"f{index}.txt")
        assert len(client.list()) == 5
        busy = threading.Thread(target=client.upload, args=(Slow(), "slow.txt"))
        busy.start()
        try:
            assert reading.wait(10)
            with pytest.raises(FtpPoolTimeout, match="pool_size"):
                client.list()
        finally:
            gate.set()
            busy.join(10)
        assert client.stat("slow.txt").size == 0


def test_checksum_is_skipped_with_one_clear_log_line(plain_url: str) -> None:
    """pyftpdlib and vsftpd offer no hash command: checksum=True logs it once, checks sizes."""
    settings = FtpSettings.from_url(plain_url, checksum=True)
    with capture_logs(logger="dtpyfw.ftp") as records, FtpClient(settings) as client:
        client.upload(io.BytesIO(b"one"), "1.txt")
        client.upload(io.BytesIO(b"two"), "2.txt")
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert len(warnings) == 1
    assert "offers no checksum command" in warnings[0]
    assert "verified by size only" in warnings[0]


# pyftpdlib only: HASH is an extension our pyftpdlib launcher adds; vsftpd cannot be taught it.
@pytest.fixture(scope="module")
def hashing_server() -> Iterator[ServiceHandle]:
    """An FTP server that implements HASH (SHA-256), which pyftpdlib itself lacks."""
    with start_ftp_server(tls=False, hash_command=True) as handle:
        yield handle


def test_checksum_is_verified_when_the_server_offers_hash(
    hashing_server: ServiceHandle, tmp_path: Path
) -> None:
    """With HASH available, uploads and downloads are compared by SHA-256, and no warning."""
    settings = FtpSettings.from_url(hashing_server.url, checksum=True)
    data = hashlib.sha256(b"seed").digest() * 40_000
    with capture_logs(logger="dtpyfw.ftp") as records, FtpClient(settings) as client:
        client.upload(io.BytesIO(data), "hashed/data.bin")
        client.download("hashed/data.bin", tmp_path / "data.bin")
        client.rmtree("hashed")
    assert (tmp_path / "data.bin").read_bytes() == data
    assert [r for r in records if r["level"] == "WARNING"] == []


# pyftpdlib only, like hashing_server: a lying HASH needs our pyftpdlib extension.
def test_a_wrong_server_checksum_fails_the_upload(tmp_path: Path) -> None:
    """A server whose HASH disagrees makes the upload fail (after retries) and leaves no file."""
    with start_ftp_server(tls=False, hash_command=True, lying_hash=True) as server:
        settings = FtpSettings.from_url(server.url, checksum=True, retry=FAST_RETRY)
        with FtpClient(settings) as client:
            with pytest.raises(FtpIntegrityError, match="SHA-256"):
                client.upload(io.BytesIO(b"payload"), "data.bin")
            assert client.list() == []
        assert raw_names(server.url) == []


async def test_async_client_round_trip(url: str, tmp_path: Path) -> None:
    """The async twin uploads, lists, walks, downloads and deletes like the sync client."""
    async with AsyncFtpClient(FtpClient(FtpSettings.from_url(url))) as client:
        await client.upload(io.BytesIO(b"async"), "a/b.txt")
        assert [e.name for e in await client.list("a")] == ["b.txt"]
        assert [step async for step in client.walk()] == [("", ["a"], []), ("a", [], ["b.txt"])]
        await client.download("a/b.txt", tmp_path / "b.txt")
        assert (tmp_path / "b.txt").read_bytes() == b"async"
        assert await client.exists("a/b.txt")
        await client.rename("a/b.txt", "a/c.txt")
        await client.delete("a/c.txt")
        await client.makedirs("x/y")
        await client.rmtree("x")
        assert (await client.stat("a")).is_dir
        assert (await client.modified("a")).tzinfo is not None
        await client.ping()


def test_service_container_serves_ftp_and_its_health(url: str) -> None:
    """An ftp section gives container.ftp.client, health pings it, shutdown closes the pool."""
    settings = Settings(ftp=FtpSettings.from_url(url))
    container = ServiceContainer.from_settings(settings)
    container.init_resources()
    client = container.ftp.client()
    client.upload(io.BytesIO(b"via container"), "c.txt")
    assert container.health().as_dict()["checks"]["ftp"]["ok"] is True  # type: ignore[index]
    container.shutdown_resources()
    with pytest.raises(FtpError, match="closed"):
        client.list()
