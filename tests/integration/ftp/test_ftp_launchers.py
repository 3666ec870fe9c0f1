"""The FTP/FTPS launchers and fixtures: env URL first, a separate server process otherwise."""

from __future__ import annotations

import ipaddress
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509

from dtpyfw.testing._backends import _ftp_session
from dtpyfw.testing._launchers import BackendUnavailable, ServiceHandle, find_ftp, find_ftps

_INNER_ARGS = ("-p", "no:asyncio", "-p", "no:cacheprovider", "-rs")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def refuses(url: str) -> bool:
    """True when nothing listens at ``url``'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_launched_servers_are_separate_processes_that_stop_ends() -> None:
    """launch="always" starts pyftpdlib in its own process (FTP and FTPS); stop() ends it."""
    for find in (find_ftp, find_ftps):
        handle = find(launch="always")
        try:
            assert handle.origin == "process"
            owner = handle._owner
            assert owner is not None
            assert owner.process.pid != 0  # type: ignore[attr-defined]
            with _ftp_session(handle.url) as session:
                session.voidcmd("NOOP")
            directory = owner.directory
            assert directory is not None
        finally:
            handle.stop()
        assert refuses(handle.url)
        assert directory is not None
        assert not directory.exists()


def test_ftps_certificate_is_for_the_loopback_address(ftps_service: ServiceHandle) -> None:
    """The launched FTPS server's self-signed certificate names IP:127.0.0.1."""
    ca_file = parse_qs(urlsplit(ftps_service.url).query)["ca_file"][0]
    certificate = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


def test_env_url_wins_and_a_dead_one_is_named(
    ftp_service: ServiceHandle, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DTPYFW_TEST_FTP_URL that answers is used as is; one that does not is an error."""
    monkeypatch.setenv("DTPYFW_TEST_FTP_URL", ftp_service.url)
    handle = find_ftp()
    assert (handle.origin, handle.url) == ("env", ftp_service.url)
    handle.stop()
    assert not refuses(ftp_service.url)
    monkeypatch.setenv("DTPYFW_TEST_FTP_URL", f"ftp://user:s3cret@127.0.0.1:{closed_port}/")
    with pytest.raises(BackendUnavailable) as raised:
        find_ftp()
    assert "DTPYFW_TEST_FTP_URL" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_ftp_url_is_a_fresh_directory_removed_afterwards(
    pytester: pytest.Pytester, ftp_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own empty directory on the server; it is removed with its files."""
    monkeypatch.setenv("DTPYFW_TEST_FTP_URL", ftp_service.url)
    record = pytester.path / "urls.txt"
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import io
            import pytest
            from dtpyfw.ftp import FtpClient, FtpSettings

            @pytest.mark.parametrize("run", [1, 2])
            def test_dir(ftp_url, run):
                with FtpClient(FtpSettings.from_url(ftp_url)) as client:
                    assert client.list() == []
                    client.upload(io.BytesIO(b"x"), "deep/er/file.txt")
                with open({str(record)!r}, "a") as out:
                    out.write(ftp_url + "\\n")
            """
        )
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=2)
    directories = [urlsplit(url).path for url in record.read_text().split()]
    assert len(set(directories)) == 2
    with _ftp_session(ftp_service.url) as session:
        remaining = {"/" + name for name, _ in session.mlsd("/")}
    assert remaining.isdisjoint(directories)
