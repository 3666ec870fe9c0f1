"""The vsftpd launcher: a real vsftpd with a temporary user, gone without a trace at stop."""

from __future__ import annotations

import ftplib
import io
import ipaddress
import os
import pwd
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography import x509

from dtpyfw.ftp import FtpClient, FtpSettings
from dtpyfw.testing import ServiceHandle, start_vsftpd
from dtpyfw.testing import _vsftpd as vsftpd_module
from dtpyfw.testing._backends import _fresh_ftp_directory, _ftp_session
from dtpyfw.testing._launchers import BackendUnavailable, _LaunchError
from dtpyfw.testing._vsftpd import _Vsftpd, find_vsftpd


@pytest.fixture(params=[False, True], ids=["ftp", "ftps"])
def launched(request: pytest.FixtureRequest) -> Iterator[ServiceHandle]:
    """A vsftpd of this test's own (plain FTP, then FTPS), stopped afterwards."""
    try:
        handle = start_vsftpd(tls=request.param)
    except _LaunchError as exc:
        pytest.fail(f"vsftpd did not start: {exc}")  # installed and root here: must start
    with handle:
        yield handle


def owner(handle: ServiceHandle) -> _Vsftpd:
    """The launched server behind a handle."""
    assert isinstance(handle._owner, _Vsftpd)
    return handle._owner


def processes_of(directory: Path) -> list[int]:
    """Pids whose command line names ``directory`` (vsftpd's config file is in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in command:
            found.append(int(entry.name))
    return found


def zombie_vsftpd_children() -> list[str]:
    """Dead vsftpd processes this process has adopted and not reaped (pid, owner uid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if name == "vsftpd" and state == "Z" and int(ppid) == os.getpid():
            found.append(f"{entry.name} (uid {entry.stat().st_uid})")
    return found


def refuses(url: str) -> bool:
    """True when nothing listens at ``url``'s port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(("127.0.0.1", parts.port or 0), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_starts_answers_and_stop_leaves_nothing(launched: ServiceHandle) -> None:
    """A logged-in session runs as the temporary user; stop ends every process, user, file."""
    server = owner(launched)
    assert launched.origin == "process"
    user = urlsplit(launched.url).username or ""
    account = pwd.getpwnam(user)
    directory = server.directory
    assert directory is not None
    assert Path(account.pw_dir).is_relative_to(directory)
    with FtpClient(FtpSettings.from_url(launched.url)) as client:
        client.upload(io.BytesIO(b"hello"), "d/hello.txt")
        assert (Path(account.pw_dir) / "d" / "hello.txt").read_bytes() == b"hello"
        # The pooled connection stays open: stop() must end its processes too.
        assert len(processes_of(directory)) >= 3  # listener, connection, its user half
        launched.stop()
    assert processes_of(directory) == []
    assert zombie_vsftpd_children() == []
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert not directory.exists()
    assert refuses(launched.url)
    launched.stop()  # a second stop is harmless


def test_a_bad_login_is_refused(launched: ServiceHandle) -> None:
    """A wrong password, or a system user's login, gets 530 (each costs PAM's 2 s delay)."""
    parts = urlsplit(launched.url)
    for user, password in ((parts.username or "", "wrong"), ("root", "x")):
        wrong = launched.url.replace(
            f"{parts.username}:{parts.password}@", f"{user}:{password}@", 1
        )
        with pytest.raises(ftplib.error_perm, match=r"^530"), _ftp_session(wrong):
            pass


def test_ftps_requires_tls_and_presents_a_certificate_from_its_ca() -> None:
    """The leaf names IP:127.0.0.1 and is signed by the CA in ``?ca_file=``; plain is refused."""
    with start_vsftpd(tls=True) as handle:
        ca_file = Path(unquote(parse_qs(urlsplit(handle.url).query)["ca_file"][0]))
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        directory = owner(handle).directory
        assert directory is not None
        leaf = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
        leaf.verify_directly_issued_by(ca)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
        parts = urlsplit(handle.url)
        with ftplib.FTP(timeout=5) as plain:  # noqa: S321 - proving plain FTP is refused
            plain.connect("127.0.0.1", parts.port or 0)
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                plain.login(unquote(parts.username or ""), unquote(parts.password or ""))


def test_kill_ends_every_connection_and_restart_serves_again(launched: ServiceHandle) -> None:
    """kill() SIGKILLs the listener with its sessions; restart() comes back on the same port."""
    server = owner(launched)
    assert server.directory is not None
    port = server.port
    with FtpClient(FtpSettings.from_url(launched.url, retry={"attempts": 1})) as client:
        client.upload(io.BytesIO(b"before"), "a.txt")
        server.kill()
        assert processes_of(server.directory) == []
        assert zombie_vsftpd_children() == []
        server.start()
        assert server.port == port
        assert [entry.name for entry in client.list()] == ["a.txt"]  # a fresh connection


def test_env_url_wins(vsftpd_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """DTPYFW_TEST_VSFTPD_URL that answers is used as is; a dead one is an error."""
    monkeypatch.setenv("DTPYFW_TEST_VSFTPD_URL", vsftpd_service.url)
    handle = find_vsftpd()
    assert (handle.origin, handle.url) == ("env", vsftpd_service.url)
    handle.stop()
    with _ftp_session(vsftpd_service.url) as session:
        session.voidcmd("NOOP")  # stopping a found server leaves it running
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        monkeypatch.setenv("DTPYFW_TEST_VSFTPD_URL", f"ftp://u:s3cret@127.0.0.1:{port}/")
        with pytest.raises(BackendUnavailable, match="DTPYFW_TEST_VSFTPD_URL") as raised:
            find_vsftpd()
    assert "s3cret" not in str(raised.value)


def test_without_root_or_vsftpd_the_launch_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One line naming the missing piece, before anything is created."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(_LaunchError, match="needs root"):
        start_vsftpd(tls=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(vsftpd_module, "_VSFTPD_CANDIDATES", ())
    with pytest.raises(_LaunchError, match=r"^vsftpd is not installed \(apt-get install vsftpd\)$"):
        start_vsftpd(tls=False)


def test_fixtures_give_each_test_a_fresh_directory(vsftpd_url: str, vsftpds_url: str) -> None:
    """Both fixtures point at an empty directory of their own on their server."""
    for url in (vsftpd_url, vsftpds_url):
        assert urlsplit(url).path.startswith("/dtpyfw-t-")
        with FtpClient(FtpSettings.from_url(url)) as client:
            assert client.list() == []
            client.upload(io.BytesIO(b"x"), "sub/x.txt")  # removed by the fixture afterwards


def test_the_fresh_directory_is_removed_with_its_content(vsftpd_service: ServiceHandle) -> None:
    """Without MLSD: nested directories and dot files go too (NLST, DELE, RMD)."""
    with _fresh_ftp_directory(vsftpd_service.url) as url:
        directory = urlsplit(url).path
        with FtpClient(FtpSettings.from_url(url)) as client:
            client.upload(io.BytesIO(b"x"), "a/b/c.txt")
            client.upload(io.BytesIO(b"y"), "a/.hidden")
    with _ftp_session(vsftpd_service.url) as session:
        assert directory.lstrip("/") not in [name.lstrip("/") for name in session.nlst("/")]
