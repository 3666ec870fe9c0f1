"""FTP and FTPS: a pooled client with retries, atomic transfers and integrity checks.

Resolve ``client`` / ``async_client`` from :class:`FtpContainer`, or build
:class:`FtpClient` from :class:`FtpSettings` (``FtpSettings.from_url(...)``).
Paths are relative to ``root_dir`` and cannot leave it. Needs the ``ftp``
extra (``pip install 'dtpyfw[ftp]'``); importing this package does not.
"""

from dtpyfw.ftp._async import AsyncFtpClient
from dtpyfw.ftp._client import FtpClient, FtpEntry
from dtpyfw.ftp._container import FtpContainer
from dtpyfw.ftp._errors import (
    FtpAuthError,
    FtpConnectionError,
    FtpError,
    FtpIntegrityError,
    FtpNotFound,
    FtpPoolTimeout,
    FtpTlsError,
    InvalidPath,
)
from dtpyfw.ftp._settings import FtpSettings

__all__ = [
    "AsyncFtpClient",
    "FtpAuthError",
    "FtpClient",
    "FtpConnectionError",
    "FtpContainer",
    "FtpEntry",
    "FtpError",
    "FtpIntegrityError",
    "FtpNotFound",
    "FtpPoolTimeout",
    "FtpSettings",
    "FtpTlsError",
    "InvalidPath",
]
