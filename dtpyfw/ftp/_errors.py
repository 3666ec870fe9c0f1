"""The FTP exceptions, under the one dtpyfw root::

    DtpyfwError
    └── FtpError               an FTP operation failed; the ftplib/ftputil error is chained
        ├── FtpAuthError       the server refused the user or password (530)
        ├── FtpConnectionError connecting failed, or the connection dropped or timed out
        ├── FtpTlsError        the TLS handshake failed (e.g. an untrusted certificate)
        ├── FtpNotFound        the remote path does not exist
        ├── FtpIntegrityError  what arrived differs in size or checksum from what was sent
        ├── FtpPoolTimeout     no pooled connection became free in time
        └── InvalidPath        a path leaves ``root_dir`` or holds forbidden characters

Only :class:`FtpConnectionError` and :class:`FtpIntegrityError` are retried,
and only for operations that are safe to repeat (see :class:`~dtpyfw.ftp.FtpClient`).
"""

from __future__ import annotations

__all__ = [
    "FtpAuthError",
    "FtpConnectionError",
    "FtpError",
    "FtpIntegrityError",
    "FtpNotFound",
    "FtpPoolTimeout",
    "FtpTlsError",
    "InvalidPath",
]

from dtpyfw.core.errors import DtpyfwError


class FtpError(DtpyfwError):
    """An FTP operation failed; the underlying ftplib / ftputil error is chained.

    ``reply_code`` is the server's three-digit reply code (``"550"``) when a
    reply caused the error, else None (a dropped connection, a local check).
    """

    http_status = 502
    problem_type = "ftp-error"

    def __init__(self, message: str = "", *, reply_code: str | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code


class FtpAuthError(FtpError):
    """The server refused the credentials; retrying would not help."""


class FtpConnectionError(FtpError):
    """The server could not be reached, or the connection dropped or timed out (transient)."""

    http_status = 503


class FtpTlsError(FtpError):
    """The TLS handshake failed, e.g. the server's certificate is not trusted."""


class FtpNotFound(FtpError):
    """The remote file or directory does not exist."""

    http_status = 404
    problem_type = "not-found"


class FtpIntegrityError(FtpError):
    """The transferred file's size or checksum does not match what was sent (transient)."""


class FtpPoolTimeout(FtpError):
    """Every pooled connection stayed busy for ``pool_timeout`` seconds."""

    http_status = 503


class InvalidPath(FtpError):
    """A path leaves the configured ``root_dir`` or contains forbidden characters."""

    http_status = 400
    problem_type = "invalid-path"
