"""pytest fixtures for vsftpd: ``vsftpd_service`` / ``vsftpds_service`` and their URLs.

They mirror ``ftp_service`` / ``ftp_url`` (see :mod:`dtpyfw.testing._backends`):
one server per session, found or started by :mod:`dtpyfw.testing._vsftpd`, and
per test its URL whose path is a fresh directory, removed afterwards. Apart
from the launcher so that ``dtpyfw.testing`` imports without pytest.
"""

from __future__ import annotations

__all__ = ["vsftpd_service", "vsftpd_url", "vsftpds_service", "vsftpds_url"]

import contextlib
import ftplib
import posixpath
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from dtpyfw.testing._backends import _FTP_DIR_PREFIX, _find_or_skip, _ftp_session
from dtpyfw.testing._launchers import ServiceHandle
from dtpyfw.testing._vsftpd import find_vsftpd, find_vsftpds


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
    with _fresh_directory(vsftpd_service.url) as url:
        yield url


@pytest.fixture
def vsftpds_url(vsftpds_service: ServiceHandle) -> Iterator[str]:
    """``vsftpds_service``'s URL (with ``?ca_file=``) whose path is a fresh directory."""
    with _fresh_directory(vsftpds_service.url) as url:
        yield url


@contextlib.contextmanager
def _fresh_directory(server_url: str) -> Iterator[str]:
    """Like ``_fresh_ftp_directory``, but removed without MLSD, which vsftpd lacks."""
    parts = urlsplit(server_url)
    directory = f"{parts.path.rstrip('/')}/{_FTP_DIR_PREFIX}{secrets.token_hex(6)}"
    with _ftp_session(server_url) as session:
        session.mkd(directory)
    try:
        yield urlunsplit(parts._replace(path=directory))
    finally:
        with _ftp_session(server_url) as session:
            _rmtree_by_nlst(session, directory)


def _rmtree_by_nlst(session: ftplib.FTP, directory: str) -> None:
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
