"""FtpSettings: every field described, URLs parsed, secrets hidden, bad roots refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import dtpyfw.ftp
from dtpyfw.config import Settings, load_settings
from dtpyfw.container import ServiceContainer
from dtpyfw.ftp import FtpClient, FtpContainer, FtpSettings, InvalidPath


def test_every_field_has_a_description() -> None:
    """config.example.yaml and the JSON schema explain each key."""
    missing = [name for name, field in FtpSettings.model_fields.items() if not field.description]
    assert missing == []


def test_from_url_reads_every_part() -> None:
    """User, password, host, port, TLS, root and CA file come from the URL."""
    settings = FtpSettings.from_url(
        "ftps://alice:p%40ss@files.example.com:2121/in%20box?ca_file=/etc/ca.pem", pool_size=2
    )
    assert (settings.host, settings.port, settings.user) == ("files.example.com", 2121, "alice")
    assert settings.password is not None
    assert settings.password.get_secret_value() == "p@ss"
    assert (settings.tls, settings.root_dir, settings.ca_file) == (
        True,
        "/in box",
        Path("/etc/ca.pem"),
    )
    assert settings.pool_size == 2
    plain = FtpSettings.from_url("ftp://example.com")
    assert (plain.tls, plain.port, plain.user, plain.root_dir) == (False, 21, "anonymous", ".")
    with pytest.raises(ValueError, match="ftp:// or ftps://"):
        FtpSettings.from_url("sftp://example.com")


def test_password_never_shows() -> None:
    """The password is a SecretStr: reprs and the client's repr hide it."""
    settings = FtpSettings(host="h", user="u", password="hunter2")
    assert "hunter2" not in repr(settings) + str(settings) + repr(FtpClient(settings))


def test_root_dir_refuses_control_characters() -> None:
    """CR/LF in root_dir would inject FTP commands: refused."""
    with pytest.raises(ValidationError, match="CR or LF"):
        FtpSettings(host="h", root_dir="/in\r\nDELE x")


@pytest.mark.parametrize(
    "path", ["..", "../x", "a/../../x", "a/b\r\nDELE c", "a\\..\\b", "nul\x00"]
)
def test_paths_that_escape_or_inject_are_invalid(path: str) -> None:
    """Escaping the root or smuggling commands raises InvalidPath before connecting."""
    client = FtpClient(FtpSettings(host="127.0.0.1", port=9, timeout=0.5))
    with pytest.raises(InvalidPath):
        client.stat(path)
    with pytest.raises(InvalidPath):
        client.upload(Path(__file__), path)
    client.close()


def test_ftp_section_is_optional_and_wired(tmp_path: Path) -> None:
    """Settings.ftp is None by default; with a section, ServiceContainer offers ftp.client."""
    assert Settings().ftp is None
    settings = load_settings(
        None, env={"DTPYFW_FTP__HOST": "127.0.0.1", "DTPYFW_FTP__PORT": "2121"}, env_file=None
    )
    assert settings.ftp == FtpSettings(host="127.0.0.1", port=2121)
    container = ServiceContainer.from_settings(settings)
    assert container.subsystems["ftp"] is True
    client = container.ftp.client()
    assert isinstance(client, FtpClient)
    assert container.ftp.async_client().client is client
    container.shutdown_resources()


def test_override_replaces_the_client() -> None:
    """override(ftp=fake) replaces the ftp subsystem's client."""
    container = ServiceContainer.from_settings(Settings(ftp=FtpSettings(host="h")))
    fake = object()
    with container.override(ftp=fake):
        assert container.ftp.client() is fake


def test_container_alone() -> None:
    """FtpContainer needs FtpSettings and connects nowhere when built."""
    container = FtpContainer(settings=FtpSettings(host="127.0.0.1", port=9))
    assert isinstance(container.client(), FtpClient)
    container.shutdown_resources()


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name of dtpyfw.ftp, sorted."""
    public = {name for name in vars(dtpyfw.ftp) if name.isidentifier() and not name.startswith("_")}
    assert dtpyfw.ftp.__all__ == sorted(dtpyfw.ftp.__all__)
    assert set(dtpyfw.ftp.__all__) == public
