"""FtpClient when the server dies: killed mid-transfer, restarted on the same port and root.

The kill-and-restart tests run on pyftpdlib and on vsftpd (whose kill ends
every connection's processes too). The cut download stays pyftpdlib-only: it
needs the launcher's throttle to catch the transfer midway.
"""

from __future__ import annotations

import functools
import hashlib
import io
import posixpath
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dtpyfw.ftp import FtpClient, FtpConnectionError, FtpSettings
from dtpyfw.log import capture_logs
from dtpyfw.testing._backends import _find_or_skip, _ftp_session
from dtpyfw.testing._launchers import ServiceHandle, _Process, start_ftp_server
from dtpyfw.testing._vsftpd import find_vsftpd

MiB = 1024 * 1024
RETRY = {"attempts": 4, "initial_delay": 0.05, "max_delay": 0.5, "jitter": 0}


class ActsMidway(io.RawIOBase):
    """Seekable bytes that call ``act`` once, when the first pass reaches ``at``."""

    def __init__(self, data: bytes, at: int, act: Callable[[], None]) -> None:
        self.buffer = io.BytesIO(data)
        self.at = at
        self.act: Callable[[], None] | None = act

    def readable(self) -> bool:
        """Raw streams must say they can be read."""
        return True

    def seekable(self) -> bool:
        """It can be rewound, so the upload is retried."""
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move within the data."""
        return self.buffer.seek(offset, whence)

    def tell(self) -> int:
        """Where the next read starts."""
        return self.buffer.tell()

    def readinto(self, target: Any) -> int:
        """The next bytes; past ``at`` on the first pass, run ``act`` first."""
        if self.act is not None and self.buffer.tell() >= self.at:
            act, self.act = self.act, None
            act()
        return self.buffer.readinto(target)


def owner(handle: ServiceHandle) -> _Process:
    """The restartable server process behind a handle."""
    assert isinstance(handle._owner, _Process)
    return handle._owner


def server_names(handle: ServiceHandle, directory: str = "/") -> list[str]:
    """Every name in ``directory`` on the server, hidden temp files included.

    NLST, not MLSD: vsftpd has no MLSD (its launcher lists dot files on NLST).
    """
    with _ftp_session(handle.url) as session:
        names = (posixpath.basename(name) for name in session.nlst(directory))
        return sorted(name for name in names if name not in (".", ".."))


@pytest.fixture(params=["pyftpdlib", "vsftpd"])
def server(request: pytest.FixtureRequest) -> Iterator[ServiceHandle]:
    """A plain FTP server of this test's own, so killing it disturbs no one else."""
    if request.param == "pyftpdlib":
        handle = start_ftp_server(tls=False)
    else:
        handle = _find_or_skip(functools.partial(find_vsftpd, launch="always"))
    with handle:
        yield handle


def test_upload_survives_a_server_killed_and_restarted_midway(server: ServiceHandle) -> None:
    """SIGKILL at 2 MB of 6 MB, restart on the same port and root: the retry completes intact."""
    data = hashlib.sha256(b"payload").digest() * (6 * MiB // 32)
    process = owner(server)
    port_before = process.port
    source = ActsMidway(data, at=2 * MiB, act=process.restart)
    settings = FtpSettings.from_url(server.url, retry=RETRY, timeout=5)
    with capture_logs(logger="dtpyfw.ftp") as records, FtpClient(settings) as client:
        entry = client.upload(source, "incoming/data.bin")  # type: ignore[arg-type]
        assert entry.size == len(data)
        copy = process.directory / "copy.bin"  # type: ignore[operator]
        client.download("incoming/data.bin", copy)
    assert source.act is None  # the server really was killed midway
    assert process.port == port_before
    assert copy.read_bytes() == data
    retries = [r for r in records if r["level"] == "WARNING"]
    assert [r["operation"] for r in retries] == ["upload"]
    assert server_names(server, "/incoming") == ["data.bin"]  # no temp file left


def test_download_cut_by_a_dead_server_leaves_the_local_file_alone(
    tmp_path: Path,
) -> None:
    """A server killed mid-download (and not back) ends in FtpConnectionError, target untouched."""
    with start_ftp_server(tls=False, throttle=512 * 1024) as server:
        process = owner(server)
        settings = FtpSettings.from_url(
            server.url, timeout=2, retry={"attempts": 2, "initial_delay": 0, "jitter": 0}
        )
        target = tmp_path / "data.bin"
        target.write_bytes(b"previous version")
        assert process.directory is not None
        # Written behind the server's back: a throttled upload would only cost time.
        (process.directory / "root" / "data.bin").write_bytes(b"z" * (2 * MiB))
        with FtpClient(settings) as client:
            killer = threading.Thread(target=kill_when_partial, args=(tmp_path, process))
            killer.start()
            try:
                with pytest.raises(FtpConnectionError):
                    client.download("data.bin", target)
            finally:
                killer.join(30)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def kill_when_partial(directory: Path, process: _Process, deadline: float = 20.0) -> None:
    """SIGKILL the server once a partial download (a .part file over 100 KB) shows up."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        for part in directory.glob(".data.bin.*.part"):
            try:
                if part.stat().st_size > 100_000:
                    process.kill()
                    return
            except FileNotFoundError:
                continue
        threading.Event().wait(0.01)  # poll interval, bounded by the deadline
    process.kill()


def test_idle_pooled_connection_broken_by_a_restart_is_replaced(server: ServiceHandle) -> None:
    """After a restart the pooled connection fails its NOOP and is replaced before use."""
    settings = FtpSettings.from_url(server.url, retry={"attempts": 1})
    with capture_logs(logger="dtpyfw.ftp") as records, FtpClient(settings) as client:
        client.upload(io.BytesIO(b"before"), "a.txt")
        owner(server).restart()
        assert [e.name for e in client.list()] == ["a.txt"]  # one attempt only: no retry
    assert any("failed its NOOP" in r["message"] for r in records)
    assert server_names(server) == ["a.txt"]
