"""``FtpClient``: FTP and FTPS over ftputil, with a connection pool, retries and checks.

ftputil is the ``ftp`` extra: it is imported when a client is created, so
``import dtpyfw.ftp`` works without it.

Paths
    Every path is relative to ``settings.root_dir`` and written with ``/``. A
    leading ``/`` means the root itself (the client sees ``root_dir`` as its
    ``/``). ``..`` may step back inside the root, never out of it; NUL, CR, LF
    and backslashes are refused. Breaking a rule raises :class:`InvalidPath`
    before anything is sent.

Connections
    A bounded pool keeps up to ``pool_size`` logged-in connections. A call
    takes one (waiting up to ``pool_timeout``), checks an idle one with NOOP
    first, and gives it back; a connection that failed at the network or
    protocol level is closed, never reused. Listings and directory operations
    go through ftputil; file transfers run on the pooled control connection
    itself (ftplib's ``transfercmd``), so a pool never holds more than
    ``pool_size`` control connections. ``timeout`` applies to connecting and
    to every read and write, on control and data connections. With ``tls``,
    the certificate and host name are verified (against ``ca_file`` when set)
    before the password is sent; data connections are encrypted too (PROT P)
    and reuse the control connection's TLS session, as servers such as vsftpd
    require.

Retries
    A dropped connection or a failed integrity check is retried under
    ``settings.retry`` for operations that are safe to repeat: ``list``,
    ``walk``, ``exists``, ``stat``, ``modified``, ``download``, ``makedirs``,
    ``rmtree``, ``delete``, and ``upload`` from a path or a seekable file.
    ``upload`` of a one-shot stream and ``rename`` run once (a lost answer
    would make a second attempt fail or lose data). Wrong credentials, TLS
    failures, missing paths and permission errors are never retried.

Transfers
    ``upload`` streams to a hidden temp name in the target directory (created
    if missing), compares the size the server reports, optionally a server
    checksum (``settings.checksum``), and only then renames it into place:
    a transfer that breaks leaves no partial file at the target. Temp files of
    failed attempts are removed once an attempt succeeds; ``list`` and
    ``walk`` never show them. ``download`` streams to a temp file next to the
    target, checks the size (and checksum), fsyncs and renames it over the
    target: the local file is whole or untouched.

Missing paths
    Servers word their refusals as they like (pyftpdlib: ``550 No such file
    or directory.``; vsftpd: ``550 Failed to change directory.``, ``553 Could
    not create file.``) and send the same codes for a permission problem. So
    the wording is never read: a 450/550/553 reply (see ``_replies``) is
    followed by a probe that lists the parents from the root down, and only a
    path those listings lack raises :class:`FtpNotFound`. The probe costs
    round trips on the failure path only.

Checksums
    With ``checksum: true`` the client asks FEAT once which hash the server
    offers (HASH with SHA-256/SHA-512/SHA-1/MD5/CRC32, or XSHA256, XSHA512,
    XSHA1, XMD5, XCRC) and compares it after each transfer. A server with none
    (pyftpdlib, vsftpd) gets a single WARNING on ``dtpyfw.ftp`` and transfers
    are checked by size only.
"""

from __future__ import annotations

__all__ = ["FtpClient", "FtpEntry"]

import builtins
import contextlib
import datetime
import ftplib
import hashlib
import logging
import os
import posixpath
import re
import secrets
import socket
import ssl
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar, cast

from dtpyfw.core._extras import require
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
from dtpyfw.ftp._replies import reply_code, reply_kind
from dtpyfw.ftp._settings import FtpSettings

T = TypeVar("T")
#: One step of :meth:`FtpClient.walk`: a directory, its subdirectories, its files.
WalkStep = tuple[str, list[str], list[str]]

#: Bytes read from a source, or from the server, per call.
CHUNK_SIZE = 256 * 1024
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")
_FORBIDDEN = ("\x00", "\r", "\n", "\\")
#: ftputil's own "not in the listing" verdict carries this code (and no server reply).
_FTPUTIL_MISSING = 550
#: Hash algorithms in order of preference: FTP name, local factory, hex digest length.
_HASHES: tuple[tuple[str, str, int], ...] = (
    ("SHA-256", "sha256", 64),
    ("SHA-512", "sha512", 128),
    ("SHA-1", "sha1", 40),
    ("MD5", "md5", 32),
    ("CRC32", "crc32", 8),
)
_X_COMMANDS = {"SHA-256": "XSHA256", "SHA-512": "XSHA512", "SHA-1": "XSHA1", "MD5": "XMD5"}
_X_COMMANDS["CRC32"] = "XCRC"

_log = logging.getLogger("dtpyfw.ftp")


@dataclass(frozen=True, slots=True)
class FtpEntry:
    """One remote file or directory, as a listing describes it."""

    #: The last path segment.
    name: str
    #: The path relative to ``root_dir`` (``""`` for the root itself).
    path: str
    is_dir: bool
    #: Bytes; 0 for directories.
    size: int
    #: From the directory listing: often minute (old files: day) precision; None
    #: in what ``upload``/``download`` return. :meth:`FtpClient.modified` asks
    #: the server for the exact time.
    modified: datetime.datetime | None

    @property
    def is_file(self) -> bool:
        """True for anything that is not a directory."""
        return not self.is_dir


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class _ChecksumPlan:
    """How to ask this server for a file's hash."""

    algorithm: str  # FTP name, e.g. SHA-256
    command: str  # HASH or an X command
    select: bool  # send OPTS HASH <algorithm> first


class FtpClient:
    """A pooled FTP/FTPS client for one server; see the module notes.

    A context manager: leaving it (or :meth:`close`) closes every pooled
    connection. Closing twice is harmless; a client garbage-collected with
    connections still open warns with ``ResourceWarning``. Safe to share
    between threads: each call uses its own pooled connection.
    """

    def __init__(self, settings: FtpSettings) -> None:
        self._ftputil = _import_ftputil()
        self._ftputil_errors = require("ftputil.error", "ftp")
        self.settings = settings
        self._policy = settings.retry.model_copy(
            update={"retry_on": (FtpConnectionError, FtpIntegrityError)}
        )
        self._pool = _Pool(self._connect, settings.pool_size, settings.pool_timeout)
        self._root: str | None = None
        self._plan_lock = threading.Lock()
        self._plan: _ChecksumPlan | bool | None = False  # False: not asked yet

    def __repr__(self) -> str:
        scheme = "ftps" if self.settings.tls else "ftp"
        where = f"{scheme}://{self.settings.user}@{self.settings.host}:{self.settings.port}"
        return f"FtpClient({where!r}, root_dir={self.settings.root_dir!r})"

    def __enter__(self) -> FtpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection; connections in use close when given back."""
        self._pool.close()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None and pool.idle_count():
            warnings.warn(
                f"{self!r} was never closed; closing its connections now",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )
            pool.close()

    # Reading

    def list(self, path: str = "") -> builtins.list[FtpEntry]:
        """The entries of the directory ``path``, sorted by name (temp uploads hidden)."""
        relative = self._resolve(path)
        return self._retrying("list", path, lambda conn: self._list(conn, relative))

    def walk(self, top: str = "") -> Iterator[WalkStep]:
        """``(directory, subdirectory names, file names)`` for ``top`` and below, top down.

        Like :func:`os.walk`; directories are relative to ``root_dir``. Each
        directory is listed with its own pooled connection, so an abandoned
        walk holds none.
        """
        self._resolve(top)
        return self._walk(top)

    def exists(self, path: str) -> bool:
        """True when ``path`` is a file or directory."""
        try:
            self.stat(path)
        except FtpNotFound:
            return False
        return True

    def stat(self, path: str) -> FtpEntry:
        """What the listing says about ``path``; FtpNotFound when it does not exist."""
        relative = self._resolve(path)
        return self._retrying("stat", path, lambda conn: self._stat(conn, relative))

    def modified(self, path: str) -> datetime.datetime:
        """When ``path`` last changed (UTC): exact for files (MDTM), the listing's otherwise.

        Directories, and servers without MDTM, give the directory listing's
        time, often to the minute only.
        """
        relative = self._resolve(path)

        def mdtm(conn: _Connection) -> datetime.datetime:
            exact = self._mdtm(conn, relative) if relative else None
            if exact is not None:
                return exact
            entry = self._stat(conn, relative)  # FtpNotFound, or a directory
            if entry.modified is None:
                raise FtpError(f"the server gives no modification time for {path!r}")
            return entry.modified

        return self._retrying("modified", path, mdtm)

    def download(self, source: str, target: str | os.PathLike[str]) -> FtpEntry:
        """Copy the remote file ``source`` to the local ``target`` atomically; see module notes."""
        relative = self._resolve(source)
        local = Path(target)
        return self._retrying(
            "download", source, lambda conn: self._download(conn, relative, local)
        )

    # Writing

    def upload(self, source: str | os.PathLike[str] | BinaryIO, target: str) -> FtpEntry:
        """Stream ``source`` (a local path or a binary file-like) to ``target``.

        Parent directories are created; the file appears at ``target`` only when
        whole (temp name + rename). A path or seekable file is retried after a
        dropped connection; a one-shot stream is sent once.
        """
        relative = self._resolve(target)
        if not relative:
            raise InvalidPath("cannot upload onto the root directory itself")
        opener, rewindable = _source_opener(source)
        failed_temps: builtins.list[str] = []

        def attempt(conn: _Connection) -> FtpEntry:
            with opener() as stream:
                return self._upload(conn, stream, relative, failed_temps)

        return self._retrying("upload", target, attempt, idempotent=rewindable)

    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` (replacing it where the server allows); sent once."""
        source_relative = self._resolve(source)
        target_relative = self._resolve(target)
        if not source_relative or not target_relative:
            raise InvalidPath("cannot rename the root directory")

        def move(conn: _Connection) -> None:
            try:
                with self._errors("rename", source_relative):
                    conn.session.rename(
                        self._remote(source_relative), self._remote(target_relative)
                    )
            except FtpError as exc:
                self._explain(conn, source_relative, exc)  # FtpNotFound when missing
                raise

        self._retrying("rename", source, move, idempotent=False)

    def delete(self, path: str) -> None:
        """Remove the file ``path``; FtpNotFound when missing (directories: :meth:`rmtree`)."""
        relative = self._resolve(path)
        if not relative:
            raise InvalidPath("the root directory is not a file")

        def remove(conn: _Connection, first: bool) -> None:
            try:
                with self._errors("delete", relative):
                    conn.session.delete(self._remote(relative))
            except FtpError as exc:
                try:
                    entry = self._explain(conn, relative, exc)
                except FtpNotFound:
                    if first:
                        raise
                    return  # an earlier attempt removed it before its answer was lost
                if entry.is_dir:
                    raise FtpError(f"{path!r} is a directory: remove it with rmtree()") from exc
                raise

        self._retrying_first("delete", path, remove)

    def makedirs(self, path: str) -> None:
        """Create the directory ``path`` and any missing parents; existing ones are fine."""
        relative = self._resolve(path)
        if not relative:
            return

        def make(conn: _Connection) -> None:
            with self._errors("makedirs", relative):
                conn.host.makedirs(self._remote(relative), exist_ok=True)

        self._retrying("makedirs", path, make)

    def rmtree(self, path: str) -> None:
        """Remove the directory ``path`` with everything in it; the root cannot be removed."""
        relative = self._resolve(path)
        if not relative:
            raise InvalidPath("refusing to remove the root directory itself")

        def remove(conn: _Connection, first: bool) -> None:
            try:
                entry = self._stat(conn, relative)
            except FtpNotFound:
                if first:
                    raise
                return
            if not entry.is_dir:
                raise FtpError(f"{path!r} is not a directory: remove it with delete()")
            with self._errors("rmtree", relative):
                conn.host.rmtree(self._remote(relative))

        self._retrying_first("rmtree", path, remove)

    def ping(self) -> None:
        """Take a pooled connection (logging in if needed) and send NOOP; never retried."""
        with self._pool.connection() as conn, self._errors("ping", ""):
            conn.session.voidcmd("NOOP")

    # Paths

    def _resolve(self, path: str) -> str:
        """``path`` relative to the root, normalised (``""`` is the root), or InvalidPath."""
        if not isinstance(path, str):
            raise InvalidPath(f"a path must be a str, not {type(path).__name__}")
        for character in _FORBIDDEN:
            if character in path:
                raise InvalidPath(f"path {path!r} contains the forbidden character {character!r}")
        parts: builtins.list[str] = []
        for segment in path.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                if not parts:
                    raise InvalidPath(f"path {path!r} leaves the root directory")
                parts.pop()
                continue
            parts.append(segment)
        return "/".join(parts)

    def _remote(self, relative: str) -> str:
        """The absolute server path of ``relative`` (the root is known once connected)."""
        root = self._root
        if root is None:  # pragma: no cover - every caller holds a connection, which sets it
            raise RuntimeError("the FTP root is not known before the first connection")
        return posixpath.join(root, relative) if relative else root

    def _root_of(self, conn: _Connection) -> str:
        if self._root is None:
            configured = self.settings.root_dir
            if configured.startswith("/"):
                root = posixpath.normpath(configured)
            else:
                with self._errors("connect", ""):
                    login_dir = conn.host.getcwd()
                root = posixpath.normpath(posixpath.join(login_dir, configured))
            self._root = "/" + root.lstrip("/")
        return self._root

    # Operations on one connection

    def _list(self, conn: _Connection, relative: str) -> builtins.list[FtpEntry]:
        remote = self._remote(relative)
        try:
            with self._errors("list", relative):
                names = conn.host.listdir(remote)
        except FtpError as exc:
            self._raise_not_found_if_missing(conn, "list", relative, exc)
            raise
        entries = []
        for name in sorted(names):
            if _TEMP_NAME.match(name):
                continue
            child = posixpath.join(relative, name) if relative else name
            with self._errors("list", child):
                # Served from the stat cache the listing just filled: no extra command.
                result = conn.host.lstat(posixpath.join(remote, name))
            entries.append(_entry(name, child, result))
        return entries

    def _walk(self, top: str) -> Iterator[WalkStep]:
        pending = [self._resolve(top)]
        while pending:
            directory = pending.pop()
            entries = self.list(directory)
            dirs = [entry.name for entry in entries if entry.is_dir]
            files = [entry.name for entry in entries if not entry.is_dir]
            yield directory, dirs, files
            pending.extend(
                posixpath.join(directory, name) if directory else name for name in reversed(dirs)
            )

    def _stat(self, conn: _Connection, relative: str) -> FtpEntry:
        if not relative:
            return FtpEntry(name="", path="", is_dir=True, size=0, modified=None)
        remote = self._remote(relative)
        conn.host.stat_cache.invalidate(remote)
        try:
            with self._errors("stat", relative):
                result = conn.host.lstat(remote)
        except FtpError as exc:
            # lstat changes into the parent directory to list it: refused when it is missing.
            self._raise_not_found_if_missing(conn, "stat", relative, exc)
            raise
        return _entry(posixpath.basename(relative), relative, result)

    def _missing(self, conn: _Connection, relative: str) -> bool:
        """The follow-up probe after a refusal: True when ``relative`` does not exist.

        ftputil's ``exists`` lists each parent from the root down and never
        changes into a directory that may be missing, so the answer comes from
        listings, not from how the server words a refusal. A probe the server
        refuses too cannot tell: False. One that fails on the network raises
        (a retry may help).
        """
        if not relative:
            return False
        conn.host.stat_cache.clear()
        try:
            with self._errors("stat", relative):
                return not conn.host.path.exists(self._remote(relative))
        except (FtpConnectionError, FtpTlsError):
            raise
        except FtpError:
            return False

    def _raise_not_found_if_missing(
        self, conn: _Connection, operation: str, relative: str, error: FtpError
    ) -> None:
        """Raise FtpNotFound (from ``error``) when ``error`` is a refusal and the path is missing.

        Otherwise return, for the caller to re-raise ``error``.
        """
        if _is_refusal(error) and self._missing(conn, relative):
            where = f"ftp {operation} {relative!r}"
            raise FtpNotFound(
                f"{where}: no such file or directory", reply_code=error.reply_code
            ) from error

    def _size(self, conn: _Connection, relative: str, *, strict: bool = False) -> int:
        """The exact size the server reports (SIZE), else the listing's.

        With ``strict``, a refused SIZE (a missing path, a directory) raises
        instead of falling back, so the caller can explain it.
        """
        try:
            with self._errors("size", relative):
                _binary(conn)  # some servers refuse SIZE in ASCII mode
                size = conn.session.size(self._remote(relative))
            if size is not None:
                return int(size)
        except FtpError as exc:
            if strict and not _is_unsupported(exc):
                raise
            if not _is_unsupported(exc) and not _is_refusal(exc):
                raise
        return self._stat(conn, relative).size  # FtpNotFound when it is missing

    def _upload(
        self,
        conn: _Connection,
        stream: BinaryIO,
        relative: str,
        failed_temps: builtins.list[str],
    ) -> FtpEntry:
        directory, name = posixpath.split(relative)
        temp = posixpath.join(directory, f".{name}.{secrets.token_hex(6)}.part")
        plan = self._checksum_plan(conn)
        hasher = _new_hasher(plan)
        sent = 0
        try:
            data = self._open_transfer(conn, f"STOR {self._remote(temp)}", temp, directory)
            try:
                while chunk := _read(stream):  # the caller's errors propagate as they are
                    with self._errors("upload", relative):
                        data.sendall(chunk)
                    hasher.update(chunk)
                    sent += len(chunk)
            except BaseException:
                _abort_transfer(conn, data)
                raise
            with self._errors("upload", relative):
                _finish_transfer(conn, data)  # the server's "226 transfer complete"
            received = self._size(conn, temp)
            if received != sent:
                raise FtpIntegrityError(
                    f"upload of {relative!r} arrived with {received} of {sent} bytes"
                )
            self._verify_checksum(conn, plan, temp, hasher)
            with self._errors("upload", relative):
                conn.session.rename(self._remote(temp), self._remote(relative))
        except BaseException:
            failed_temps.append(temp)
            self._remove_quietly(conn, temp)  # a dropped connection cannot: a retry will
            raise
        for leftover in failed_temps:
            self._remove_quietly(conn, leftover)
        # No MDTM here: one round trip less per file; modified() asks when wanted.
        return FtpEntry(name, relative, False, sent, None)

    def _remove_quietly(self, conn: _Connection, relative: str) -> None:
        with contextlib.suppress(Exception):
            conn.session.delete(self._remote(relative))

    def _open_transfer(
        self, conn: _Connection, command: str, relative: str, directory: str | None = None
    ) -> socket.socket:
        """Send ``command`` (STOR/RETR) in binary mode; the data connection it opens.

        For a STOR (``directory`` given) that the server refuses, the directory
        is created and the command sent again when the probe finds the directory
        missing; a RETR refused for a missing file raises FtpNotFound. Transfers
        run on the pooled control connection itself (ftplib's documented
        ``transfercmd``), not on a second one.
        """
        try:
            with self._errors("transfer", relative):
                _binary(conn)
                return cast(socket.socket, conn.session.transfercmd(command))
        except FtpError as exc:
            if directory is None:
                self._raise_not_found_if_missing(conn, "download", relative, exc)
                raise
            if not _is_refusal(exc) or not self._missing(conn, directory):
                raise
        with self._errors("upload", directory):
            conn.host.makedirs(self._remote(directory), exist_ok=True)
            _binary(conn)
            return cast(socket.socket, conn.session.transfercmd(command))

    def _mdtm(self, conn: _Connection, relative: str) -> datetime.datetime | None:
        """The exact modification time of a file (MDTM), or None when the server gives none."""
        try:
            with self._errors("modified", relative):
                answer = conn.session.sendcmd(f"MDTM {self._remote(relative)}")
            return _parse_mdtm(answer)
        except (FtpConnectionError, FtpTlsError):
            raise
        except FtpError:
            return None  # no MDTM, a directory, or missing: the caller finds out which

    def _explain(self, conn: _Connection, relative: str, error: FtpError) -> FtpEntry:
        """After a refused command: FtpNotFound when ``relative`` is missing, else its entry.

        Connection errors propagate as they are; the listing is only consulted
        when the server answered, so the common path costs no LIST.
        """
        if isinstance(error, FtpConnectionError | FtpTlsError):
            raise error
        return self._stat(conn, relative)

    def _download(self, conn: _Connection, relative: str, local: Path) -> FtpEntry:
        try:
            expected = self._size(conn, relative, strict=True)
        except FtpError as exc:
            entry = self._explain(conn, relative, exc)  # FtpNotFound when missing
            if entry.is_dir:
                raise FtpError(f"{relative!r} is a directory, not a file") from exc
            expected = entry.size
        plan = self._checksum_plan(conn)
        hasher = _new_hasher(plan)
        received = 0
        temp = _local_temp(local)
        try:
            with open(temp, "wb") as out:
                data = self._open_transfer(conn, f"RETR {self._remote(relative)}", relative)
                try:
                    while True:
                        with self._errors("download", relative):
                            chunk = data.recv(CHUNK_SIZE)
                        if not chunk:
                            break
                        out.write(chunk)
                        hasher.update(chunk)
                        received += len(chunk)
                except BaseException:
                    _abort_transfer(conn, data)
                    raise
                with self._errors("download", relative):
                    _finish_transfer(conn, data)
                out.flush()
                os.fsync(out.fileno())
            if received != expected:
                raise FtpIntegrityError(
                    f"download of {relative!r} got {received} of {expected} bytes"
                )
            self._verify_checksum(conn, plan, relative, hasher)
            os.replace(temp, local)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return FtpEntry(posixpath.basename(relative), relative, False, received, None)

    # Checksums

    def _checksum_plan(self, conn: _Connection) -> _ChecksumPlan | None:
        if not self.settings.checksum:
            return None
        with self._plan_lock:
            if self._plan is False:
                with self._errors("feat", ""):
                    try:
                        features = conn.session.sendcmd("FEAT")
                    except ftplib.error_perm:
                        features = ""
                self._plan = _choose_checksum(features)
                if self._plan is None:
                    _log.warning(
                        "FTP server %s:%s offers no checksum command (HASH, XSHA256, XSHA1, "
                        "XMD5, XCRC): transfers are verified by size only",
                        self.settings.host,
                        self.settings.port,
                        extra={"host": self.settings.host, "port": self.settings.port},
                    )
            return cast(_ChecksumPlan | None, self._plan)

    def _verify_checksum(
        self, conn: _Connection, plan: _ChecksumPlan | None, relative: str, hasher: _Hasher
    ) -> None:
        if plan is None:
            return
        with self._errors("checksum", relative):
            if plan.select:
                conn.session.sendcmd(f"OPTS HASH {plan.algorithm}")
            answer = conn.session.sendcmd(f"{plan.command} {self._remote(relative)}")
        expected = hasher.hexdigest().lower()
        length = next(size for name, _, size in _HASHES if name == plan.algorithm)
        found = [token.lower() for token in answer.split() if _is_hex(token, length)]
        if expected not in found:
            raise FtpIntegrityError(
                f"{plan.algorithm} of {relative!r} differs: sent {expected}, server has "
                f"{found[0] if found else answer!r}"
            )

    # Connections, retries and errors

    def _connect(self) -> _Connection:
        session_holder: builtins.list[Any] = []
        factory = _session_factory(self.settings, session_holder)
        password = self.settings.password
        with self._errors("connect", ""):
            host = self._ftputil.FTPHost(
                self.settings.host,
                self.settings.user,
                "" if password is None else password.get_secret_value(),
                session_factory=factory,
            )
        host.set_time_shift(0.0)  # listings in UTC, as RFC 3659 and most servers do
        host.stat_cache.resize(10_000)
        conn = _Connection(host, session_holder[0])
        try:
            self._root_of(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _retrying(
        self,
        operation: str,
        path: str,
        call: Callable[[_Connection], T],
        *,
        idempotent: bool = True,
    ) -> T:
        """``call`` on a pooled connection, retried when safe; see the module notes."""
        attempt = 0

        def once() -> T:
            nonlocal attempt
            attempt += 1
            try:
                with self._pool.connection() as conn:
                    # Fresh listings for every call: other clients change the server too.
                    conn.host.stat_cache.clear()
                    return call(conn)
            except (FtpConnectionError, FtpIntegrityError) as exc:
                if idempotent and attempt < self._policy.attempts:
                    _log.warning(
                        "FTP %s of %r failed (attempt %d of %d), retrying: %s",
                        operation,
                        path,
                        attempt,
                        self._policy.attempts,
                        exc,
                        extra={"operation": operation, "path": path, "attempt": attempt},
                    )
                raise

        if not idempotent:
            return once()
        return self._policy.call(once)

    def _retrying_first(
        self, operation: str, path: str, call: Callable[[_Connection, bool], None]
    ) -> None:
        """Like :meth:`_retrying`, telling ``call`` whether this is the first attempt."""
        attempts = 0

        def counted(conn: _Connection) -> None:
            nonlocal attempts
            attempts += 1
            call(conn, attempts == 1)

        self._retrying(operation, path, counted)

    @contextlib.contextmanager
    def _errors(self, operation: str, path: str) -> Iterator[None]:
        """Translate ftplib / ftputil / socket errors into the FtpError tree, chained."""
        try:
            yield
        except FtpError:
            raise
        except self._ftputil_errors.FTPError as exc:
            cause = getattr(exc, "original_error", None) or exc.__cause__
            if cause is None or cause is exc:
                # ftputil's own verdict (a missing path, a listing it cannot parse).
                raise _verdict(exc, operation, path) from exc
            raise _classify(cause, operation, path, str(exc)) from exc
        except (ftplib.Error, OSError, EOFError) as exc:
            raise _classify(exc, operation, path, str(exc)) from exc


def _import_ftputil() -> Any:
    """ftputil, without its import-time warning about its default path encoding.

    ftputil 5 warns on import that its default encoding changes in 6.0; the
    warning is about callers relying on that default, and our sessions always
    set ``settings.encoding`` explicitly.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="In ftputil 6.0.0, the default file path encoding",
            category=DeprecationWarning,
        )
        return require("ftputil", "ftp")


class _Connection:
    """One pooled, logged-in ftputil host and its control session."""

    __slots__ = ("host", "session")

    def __init__(self, host: Any, session: Any) -> None:
        self.host = host
        self.session = session

    def healthy(self) -> bool:
        try:
            self.session.voidcmd("NOOP")
        except (ftplib.Error, OSError, EOFError):
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.host.close()


class _Pool:
    """At most ``size`` connections; idle ones are reused newest first, after a NOOP."""

    def __init__(self, connect: Callable[[], _Connection], size: int, timeout: float) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    @contextlib.contextmanager
    def connection(self) -> Iterator[_Connection]:
        if not self._slots.acquire(timeout=self._timeout):
            raise FtpPoolTimeout(
                f"no FTP connection became free within {self._timeout:g}s "
                "(raise ftp.pool_size or ftp.pool_timeout)"
            )
        try:
            conn = self._checkout()
            try:
                yield conn
            except BaseException as exc:
                if _keeps_connection(exc):
                    self._checkin(conn)
                else:
                    _log.debug("discarding an FTP connection after %s", type(exc).__name__)
                    conn.close()
                raise
            self._checkin(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _checkout(self) -> _Connection:
        while True:
            with self._lock:
                if self._closed:
                    raise FtpError("the FTP client is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if conn.healthy():
                return conn
            _log.debug("a pooled FTP connection failed its NOOP; opening another")
            conn.close()

    def _checkin(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()


def _keeps_connection(exc: BaseException) -> bool:
    """True when the server answered cleanly, so the connection is still in sync."""
    return isinstance(exc, FtpError) and not isinstance(
        exc, FtpConnectionError | FtpTlsError | FtpIntegrityError
    )


class _Session(ftplib.FTP):
    """ftplib.FTP that remembers the transfer type, so TYPE I is sent only when needed."""

    transfer_type: str | None = None

    def putcmd(self, line: str) -> None:
        self.transfer_type = _type_after(line, self.transfer_type)
        super().putcmd(line)


class _TlsSession(ftplib.FTP_TLS):
    """FTP_TLS that remembers the transfer type, and whose data connections resume the
    control connection's TLS session (servers such as vsftpd insist)."""

    transfer_type: str | None = None

    def putcmd(self, line: str) -> None:
        self.transfer_type = _type_after(line, self.transfer_type)
        super().putcmd(line)

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[Any, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - wrapped below
        if self._prot_p:  # type: ignore[attr-defined]  # set by prot_p()
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def _type_after(line: str, current: str | None) -> str | None:
    if line[:5].upper() == "TYPE ":
        return line[5:].strip().upper()
    return current


def _binary(conn: _Connection) -> None:
    if conn.session.transfer_type != "I":
        conn.session.voidcmd("TYPE I")


def _finish_transfer(conn: _Connection, data: socket.socket) -> None:
    """Close a data connection cleanly (TLS close_notify first) and read the 2xx reply."""
    if isinstance(data, ssl.SSLSocket):
        data.unwrap()
    data.close()
    conn.session.voidresp()


def _abort_transfer(conn: _Connection, data: socket.socket) -> None:
    """Close a failed transfer's data connection; read the server's reply if it comes.

    The server then finishes (or aborts) the command; reading its answer keeps
    the control connection in step, so the partial temp file can be removed.
    """
    with contextlib.suppress(Exception):
        data.close()
    with contextlib.suppress(Exception):
        conn.session.getresp()


def _session_factory(settings: FtpSettings, holder: list[Any]) -> Callable[[str, str, str], Any]:
    """The ftputil session factory: timeouts, explicit TLS, passive mode; keeps the first."""
    context = _tls_context(settings) if settings.tls else None

    def make(host: str, user: str, password: str) -> ftplib.FTP:
        session: ftplib.FTP
        if context is not None:
            session = _TlsSession(
                context=context, timeout=settings.timeout, encoding=settings.encoding
            )
        else:
            # Plain FTP only when the settings ask for it (tls: false).
            session = _Session(timeout=settings.timeout, encoding=settings.encoding)
        try:
            session.connect(host, settings.port)
            if isinstance(session, ftplib.FTP_TLS):
                session.auth()  # the certificate is checked before the password is sent
            session.login(user, password)
            if isinstance(session, ftplib.FTP_TLS):
                session.prot_p()
            session.set_pasv(settings.passive)
        except BaseException:
            with contextlib.suppress(Exception):
                session.close()
            raise
        if not holder:
            holder.append(session)
        return session

    return make


def _tls_context(settings: FtpSettings) -> ssl.SSLContext:
    if not settings.tls_verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    return ssl.create_default_context(cafile=cafile)


def _classify(error: BaseException, operation: str, path: str, text: str) -> FtpError:
    """The FtpError for an ftplib, ssl or socket error."""
    where = f"ftp {operation} {path!r}" if path else f"ftp {operation}"
    message = f"{where} failed: {text or type(error).__name__}"
    if isinstance(error, ssl.SSLError):
        return _classify_tls(error, where, message)
    if isinstance(error, ftplib.error_perm | ftplib.error_temp):
        return _classify_reply(error, where, message)
    if isinstance(error, ftplib.error_reply | ftplib.error_proto | EOFError | OSError):
        return FtpConnectionError(message)  # the network, or a desynchronised session
    return FtpError(message)


def _classify_tls(error: ssl.SSLError, where: str, message: str) -> FtpError:
    if isinstance(error, ssl.SSLCertVerificationError):
        return FtpTlsError(f"{where}: the server's certificate is not trusted: {error}")
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return FtpConnectionError(message)  # the connection dropped under TLS
    return FtpTlsError(message)


def _classify_reply(error: ftplib.Error, where: str, message: str) -> FtpError:
    """A 4xx/5xx answer: the server is there and said no. Decided by the code alone.

    A refusal (450/550/553) stays a plain FtpError carrying its code: whether
    the path is missing is for the caller to find out (:meth:`FtpClient._missing`).
    """
    code = reply_code(error)
    kind = reply_kind(code)
    if kind == "auth":
        return FtpAuthError(f"{where}: the server refused the login: {error}", reply_code=code)
    if kind == "connection":
        return FtpConnectionError(message, reply_code=code)  # closing, or no data connection
    return FtpError(message, reply_code=code)


def _verdict(error: BaseException, operation: str, path: str) -> FtpError:
    """An ftputil error with no ftplib error behind it: the server answered, ftputil judged.

    ftputil gives its "not in the directory listing" verdict the code 550 (in
    ``errno``): that is the listing speaking, not the server's wording.
    """
    where = f"ftp {operation} {path!r}" if path else f"ftp {operation}"
    if getattr(error, "errno", None) == _FTPUTIL_MISSING:
        return FtpNotFound(f"{where}: no such file or directory")
    return FtpError(f"{where} failed: {error}")


def _is_unsupported(exc: FtpError) -> bool:
    return reply_kind(exc.reply_code) == "unsupported"


def _is_refusal(exc: FtpError) -> bool:
    """True for a 450/550/553 answer: maybe a missing path, maybe not (see _replies)."""
    return type(exc) is FtpError and reply_kind(exc.reply_code) == "refused"


def _choose_checksum(features: str) -> _ChecksumPlan | None:
    lines = [line.strip() for line in features.splitlines()[1:-1]]
    offered: dict[str, bool] = {}  # HASH algorithm -> selected now
    commands = set()
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "HASH":
            for item in rest.split(";"):
                name = item.strip()
                if name:
                    offered[name.rstrip("*").upper()] = name.endswith("*")
        elif word:
            commands.add(word.upper())
    for name, _, _ in _HASHES:
        if name in offered:
            return _ChecksumPlan(name, "HASH", select=not offered[name])
    for name, _, _ in _HASHES:
        if _X_COMMANDS[name] in commands:
            return _ChecksumPlan(name, _X_COMMANDS[name], select=False)
    return None


class _Crc32:
    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


class _NoHash:
    def update(self, data: bytes, /) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


def _new_hasher(plan: _ChecksumPlan | None) -> _Hasher:
    if plan is None:
        return _NoHash()
    local = next(local for name, local, _ in _HASHES if name == plan.algorithm)
    if local == "crc32":
        return _Crc32()
    return hashlib.new(local, usedforsecurity=False)


def _is_hex(token: str, length: int) -> bool:
    return len(token) == length and all(c in "0123456789abcdefABCDEF" for c in token)


def _parse_mdtm(answer: str) -> datetime.datetime:
    """``213 YYYYMMDDHHMMSS[.fff]`` (UTC, RFC 3659) as an aware datetime."""
    match = re.match(r"^213 (\d{14})(?:\.(\d{1,6}))?", answer.strip())
    if match is None:
        raise FtpError(f"cannot read the MDTM answer {answer!r}")
    stamp = datetime.datetime.strptime(match.group(1), "%Y%m%d%H%M%S")
    micros = int((match.group(2) or "0").ljust(6, "0"))
    return stamp.replace(microsecond=micros, tzinfo=datetime.UTC)


def _entry(name: str, path: str, result: Any) -> FtpEntry:
    is_dir = bool(result.st_mode & 0o040000) and not bool(result.st_mode & 0o100000)
    mtime = result.st_mtime
    modified = None if mtime is None else datetime.datetime.fromtimestamp(mtime, datetime.UTC)
    return FtpEntry(
        name=name,
        path=path,
        is_dir=is_dir,
        size=0 if is_dir else int(result.st_size or 0),
        modified=modified,
    )


def _source_opener(
    source: str | os.PathLike[str] | BinaryIO,
) -> tuple[Callable[[], contextlib.AbstractContextManager[BinaryIO]], bool]:
    """A way to (re)open ``source`` for each attempt, and whether there can be a second."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        # Opened now too, so a missing local file fails before any connection is made.
        with path.open("rb"):
            pass
        return (lambda: path.open("rb")), True
    if not callable(getattr(source, "read", None)):
        raise TypeError(f"source must be a path or a binary file-like, not {type(source)!r}")
    start = _start_position(source)
    used = False

    @contextlib.contextmanager
    def reopen() -> Iterator[BinaryIO]:
        nonlocal used
        if used and start is not None:
            source.seek(start)
        used = True
        yield source  # the caller's file: never closed here

    return reopen, start is not None


def _start_position(source: BinaryIO) -> int | None:
    try:
        return source.tell() if source.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _read(stream: BinaryIO) -> bytes:
    chunk: object = stream.read(CHUNK_SIZE)
    if chunk is None:
        raise FtpError("the source stream is non-blocking and had no data ready")
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise TypeError(f"source.read() must return bytes, not {type(chunk).__name__}")
    return bytes(chunk)


def _local_temp(target: Path) -> Path:
    """A new temp file next to ``target`` (so the final rename stays on one file system)."""
    while True:
        temp = target.parent / f".{target.name}.{secrets.token_hex(6)}.part"
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        return temp
