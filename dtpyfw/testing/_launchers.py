"""Find, or start, the servers that tests talk to: PostgreSQL, Redis, S3, GCS, FTP(S).

Each ``find_*`` function tries these places in order and returns the first that
answers (DESIGN.md, "Backends and how tests reach them"):

1. the URL in ``DTPYFW_TEST_<NAME>_URL``. A URL set there is trusted but
   verified: when it does not answer, :class:`BackendUnavailable` names it and
   nothing else is tried, because silently testing against another server would
   hide the misconfiguration;
2. a server already answering on its default loopback port;
3. a local server process started on a free port, in a temporary directory;
4. a testcontainers container, when a Docker engine answers.

``launch="always"`` skips 1 and 2 (to test the launcher itself); ``"never"``
skips 3 and 4. A started server belongs to its :class:`ServiceHandle`:
``stop()`` shuts it down, waits for it to exit and removes its directory. An
``atexit`` hook stops whatever is still running when the interpreter exits.
The Python servers (moto, the GCS emulator, pyftpdlib) also exit by themselves
when the process that started them dies, so a test run killed before its
``atexit`` hook leaves none of them running.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ServiceHandle",
    "find_ftp",
    "find_ftps",
    "find_gcs",
    "find_postgres",
    "find_redis",
    "find_s3",
    "s3_credentials",
    "start_ftp_server",
]

import atexit
import contextlib
import datetime
import gc
import getpass
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from dtpyfw.core._extras import require
from dtpyfw.core.errors import DtpyfwError

Origin = Literal["env", "default-port", "process", "testcontainers"]
Launch = Literal["auto", "always", "never"]

_log = logging.getLogger("dtpyfw.testing")


class BackendUnavailable(DtpyfwError):
    """No server for a backend answered anywhere; the message lists every place tried."""

    def __init__(self, backend: str, tried: Iterable[str], hint: str) -> None:
        self.backend = backend
        self.tried = tuple(tried)
        lines = "\n".join(f"  {number}. {place}" for number, place in enumerate(self.tried, 1))
        super().__init__(f"no {backend} server for tests; tried:\n{lines}\n{hint}")


@dataclass(frozen=True)
class ServiceHandle:
    """A server tests can reach at ``url``, and where it came from.

    ``stop()`` is harmless to call twice. It shuts down a server this module
    started (``origin`` "process" or "testcontainers") and does nothing for one
    it merely found ("env", "default-port"). The handle is a context manager.
    """

    name: str
    url: str
    origin: Origin
    _owner: _Launched | None = field(default=None, repr=False, compare=False, kw_only=True)

    def stop(self) -> None:
        """Stop the server if this module started it; wait for it to exit."""
        if self._owner is not None:
            self._owner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        owner = getattr(self, "_owner", None)
        if owner is not None and not owner.stopped:
            warnings.warn(
                f"{self!r} was never stopped; the atexit hook will stop it",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )


def find_postgres(*, launch: Launch = "auto") -> ServiceHandle:
    """Return a PostgreSQL server for tests; its ``url`` is ``postgresql://``, psycopg-ready."""
    return _find(_POSTGRES, launch=launch)


def find_redis(*, launch: Launch = "auto") -> ServiceHandle:
    """Return a Redis server for tests; its ``url`` is ``redis://host:port/0``."""
    return _find(_REDIS, launch=launch)


def find_s3(*, launch: Launch = "auto") -> ServiceHandle:
    """Return an S3-compatible server for tests (moto); ``url`` is its endpoint URL.

    Credentials ride in the URL when the server needs real ones
    (``http://KEY:SECRET@host:port``); see :func:`s3_credentials`.
    """
    return _find(_S3, launch=launch)


def find_gcs(*, launch: Launch = "auto") -> ServiceHandle:
    """Return a Google Cloud Storage emulator for tests; ``url`` is its API endpoint."""
    return _find(_GCS, launch=launch)


def find_ftp(*, launch: Launch = "auto") -> ServiceHandle:
    """Return a plain FTP server for tests; ``url`` is ``ftp://user:password@host:port/``."""
    return _find(_FTP, launch=launch)


def find_ftps(*, launch: Launch = "auto") -> ServiceHandle:
    """Return an FTPS server (explicit TLS) for tests.

    ``url`` is ``ftps://user:password@host:port/?ca_file=PATH``: the CA file that
    verifies its certificate travels in the URL (a launched server's certificate
    is self-signed for ``IP:127.0.0.1``).
    """
    return _find(_FTPS, launch=launch)


def s3_credentials(url: str) -> tuple[str, str, str]:
    """``(endpoint_url, access_key_id, secret_access_key)`` from a test S3 URL.

    moto accepts any credentials; a URL without user info gets ``testing``.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{host}:{parts.port}" if parts.port else host
    endpoint = urlunsplit((parts.scheme, netloc, "", "", ""))
    return endpoint, unquote(parts.username or "testing"), unquote(parts.password or "testing")


# --- the search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Backend:
    """Everything :func:`_find` needs to know about one kind of server."""

    name: str
    env_var: str
    default_port: int
    default_urls: Callable[[int], list[str]]
    normalize: Callable[[str], str]
    probe: Callable[[str], str | None]  # None when the server answers, else why not
    start_process: Callable[[], ServiceHandle]  # raises _LaunchError
    start_container: Callable[[], ServiceHandle]  # raises _LaunchError
    hint: str


class _LaunchError(Exception):
    """Starting a server failed; the message says why (with the server's log tail)."""


def _find(backend: _Backend, *, launch: Launch) -> ServiceHandle:
    if launch not in ("auto", "always", "never"):
        raise ValueError(f"launch must be 'auto', 'always' or 'never', not {launch!r}")
    tried: list[str] = []
    if launch == "always":
        tried.append(f"${backend.env_var} and the default port: skipped (launch='always')")
    else:
        env_url = os.environ.get(backend.env_var, "").strip()
        if env_url:
            url = backend.normalize(env_url)
            problem = backend.probe(url)
            if problem is None:
                return _found(ServiceHandle(backend.name, url, "env"))
            tried.append(f"${backend.env_var}={_redact(url)}: {problem}")
            raise BackendUnavailable(
                backend.name, tried, f"Fix or unset ${backend.env_var}; nothing else was tried."
            )
        tried.append(f"${backend.env_var}: not set")
        for url in backend.default_urls(backend.default_port):
            problem = backend.probe(url)
            if problem is None:
                return _found(ServiceHandle(backend.name, url, "default-port"))
            tried.append(f"{_redact(url)}: {problem}")

    if launch == "never":
        tried.append("a local server process and testcontainers: skipped (launch='never')")
        raise BackendUnavailable(backend.name, tried, backend.hint)

    try:
        return _found(backend.start_process())
    except (_LaunchError, OSError, subprocess.SubprocessError) as exc:
        tried.append(f"a local server process: {exc}")

    problem = _docker_problem()
    if problem is None:
        try:
            return _found(backend.start_container())
        except _LaunchError as exc:
            problem = str(exc)
    tried.append(f"testcontainers: {problem}")
    raise BackendUnavailable(backend.name, tried, backend.hint)


def _found(handle: ServiceHandle) -> ServiceHandle:
    _log.info(
        "%s for tests: %s (%s)",
        handle.name,
        _redact(handle.url),
        handle.origin,
        extra={"backend": handle.name, "origin": handle.origin, "url": _redact(handle.url)},
    )
    return handle


# --- servers this module started ---------------------------------------------------------------

_LIVE: set[_Launched] = set()
_LIVE_LOCK = threading.Lock()


class _Launched:
    """A server this module started: stopped once, by its handle or at interpreter exit."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stopped = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        # The lock makes a second caller wait until the server has really exited.
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            with _LIVE_LOCK:
                _LIVE.discard(self)
            try:
                self._shutdown()
            finally:
                if self.directory is not None:
                    shutil.rmtree(self.directory, ignore_errors=True)

    def _shutdown(self) -> None:
        raise NotImplementedError


@atexit.register
def _stop_everything_still_running() -> None:
    with _LIVE_LOCK:
        running = list(_LIVE)
    for launched in running:
        try:
            launched.stop()
        except Exception:
            _log.exception("could not stop a test server at exit")


# --- PostgreSQL --------------------------------------------------------------------------------

_PORT_ATTEMPTS = 5
_PG_CONNECT_TIMEOUT = 2  # seconds; libpq's minimum
_PG_SEARCH_GLOB = "/usr/lib/postgresql/*/bin"


def _postgres_default_urls(port: int) -> list[str]:
    users = ["postgres"]
    with contextlib.suppress(Exception):  # no login name in some containers
        users.append(getpass.getuser())
    return [f"postgresql://{user}@127.0.0.1:{port}/postgres" for user in dict.fromkeys(users)]


def _postgres_normalize(url: str) -> str:
    # Accept SQLAlchemy URLs ("postgresql+psycopg://") and the short "postgres://" scheme.
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def _postgres_probe(url: str) -> str | None:
    require("psycopg", "postgres")
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=_PG_CONNECT_TIMEOUT, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return _one_line(exc)
    return None


def _postgres_binaries() -> tuple[Path, Path] | None:
    """``(initdb, pg_ctl)`` from PATH, else from the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).parent] if on_path else []

    def version(directory: Path) -> int:
        number = directory.parent.name
        return int(number) if number.isdigit() else -1

    candidates += sorted(Path("/").glob(_PG_SEARCH_GLOB.lstrip("/")), key=version, reverse=True)
    for directory in candidates:
        initdb, pg_ctl = directory / "initdb", directory / "pg_ctl"
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    initdb_on_path = shutil.which("initdb")
    if initdb_on_path and on_path:
        return Path(initdb_on_path), Path(on_path)
    return None


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account that runs initdb and pg_ctl when we are root."""

    uid: int
    gid: int
    name: str


def _postgres_run_as() -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam("nobody")
    except KeyError:
        raise _LaunchError(
            "initdb refuses to run as root and there is no 'nobody' account to run it as"
        ) from None
    return _RunAs(account.pw_uid, account.pw_gid, account.pw_name)


class _PostgresServer(_Launched):
    def __init__(self, directory: Path, pg_ctl: Path, run_as: _RunAs | None) -> None:
        super().__init__(directory)
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.pg_ctl = pg_ctl
        self.run_as = run_as

    def run(self, *args: str | Path, timeout: float) -> subprocess.CompletedProcess[str]:
        as_user: dict[str, Any] = {}
        if self.run_as is not None:
            as_user = {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}
        return subprocess.run(
            [str(arg) for arg in args],
            cwd=self.directory,
            # C messages make the log greppable for "Address already in use".
            env={**os.environ, "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **as_user,
        )

    def start(self, port: int) -> str | None:
        """Start on ``port``; None on success, else the failure with the log tail."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        options = " ".join(
            [
                f"-p {port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={shlex.quote(str(self.directory))}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        result = self.run(
            self.pg_ctl,
            "-w",
            "-t",
            "30",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.log,
            "start",
            timeout=60,
        )
        if result.returncode == 0:
            return None
        reason = _one_line(result.stderr)
        return f"pg_ctl start failed ({reason}); log tail:\n{self.log_tail(offset)}"

    def log_tail(self, offset: int = 0, lines: int = 20) -> str:
        try:
            with self.log.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _shutdown(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        fast = self.run(
            self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop", timeout=60
        )
        if fast.returncode != 0 and (self.data / "postmaster.pid").exists():
            self.run(self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)


def _start_postgres_process() -> ServiceHandle:
    binaries = _postgres_binaries()
    if binaries is None:
        raise _LaunchError(f"initdb/pg_ctl not found on PATH or under {_PG_SEARCH_GLOB}")
    initdb, pg_ctl = binaries
    run_as = _postgres_run_as()
    directory = _make_temp_dir("dtpyfw-postgres-", run_as)
    server = _PostgresServer(directory, pg_ctl, run_as)
    try:
        init = server.run(
            initdb,
            "-D",
            server.data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            timeout=120,
        )
        if init.returncode != 0:
            raise _LaunchError(f"initdb failed: {init.stdout}{init.stderr}".strip())
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            failure = server.start(port)
            if failure is None:
                url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                problem = _postgres_probe(url)
                if problem is not None:
                    raise _LaunchError(
                        f"started on port {port} but {problem}; log tail:\n{server.log_tail()}"
                    )
                return ServiceHandle("PostgreSQL", url, "process", _owner=server)
            if "Address already in use" not in failure:
                raise _LaunchError(failure)
        raise _LaunchError(f"every one of {_PORT_ATTEMPTS} free ports was taken before use")
    except BaseException:
        server.stop()
        raise


def _start_postgres_container() -> ServiceHandle:
    container_class = _testcontainers_class(
        "PostgresContainer", "testcontainers.community.postgres", "testcontainers.postgres"
    )
    container = container_class(
        "postgres:16-alpine",
        username="postgres",
        password="postgres",  # noqa: S106 - throwaway credentials of a throwaway container
        dbname="postgres",
    ).with_command("postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    owner = _start_container(container)
    url = container.get_connection_url(driver=None)
    return ServiceHandle("PostgreSQL", str(url), "testcontainers", _owner=owner)


# --- Redis -------------------------------------------------------------------------------------

_REDIS_READY_TIMEOUT = 15.0


def _redis_default_urls(port: int) -> list[str]:
    return [f"redis://127.0.0.1:{port}/0"]


def _redis_probe(url: str, timeout: float = 2.0, *, pid: int | None = None) -> str | None:
    """None when PING answers (from process ``pid``, when given), else why not."""
    require("redis", "redis")
    import redis

    try:
        with redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout
        ) as client:
            client.ping()
            if pid is not None:
                answering = client.info("server").get("process_id")
                if answering != pid:
                    return f"another redis-server (pid {answering}) answers on this port"
    except (redis.RedisError, OSError, ValueError) as exc:
        return _one_line(exc)
    return None


class _RedisServer(_Launched):
    def __init__(self, directory: Path, process: subprocess.Popen[bytes]) -> None:
        super().__init__(directory)
        self.process = process

    def _shutdown(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start_redis_process() -> ServiceHandle:
    executable = shutil.which("redis-server")
    if executable is None:
        raise _LaunchError("redis-server not found on PATH")
    for _ in range(_PORT_ATTEMPTS):
        handle = _start_redis_once(executable, _free_port())
        if handle is not None:
            return handle
    raise _LaunchError(f"every one of {_PORT_ATTEMPTS} free ports was taken before use")


def _start_redis_once(executable: str, port: int) -> ServiceHandle | None:
    """Start redis-server on ``port``; None when another process took the port first."""
    directory = _make_temp_dir("dtpyfw-redis-", None)
    log_path = directory / "redis.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it before cleanup
        )
    server = _RedisServer(directory, process)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + _REDIS_READY_TIMEOUT
        while True:
            if process.poll() is not None:
                tail = _tail(log_path)
                if "Address already in use" in tail:
                    server.stop()
                    return None
                raise _LaunchError(f"redis-server exited ({process.returncode}); log:\n{tail}")
            # Until our server binds (or fails to), another may answer on a clashing port.
            problem = _redis_probe(url, timeout=0.5, pid=process.pid)
            if problem is None:
                return ServiceHandle("Redis", url, "process", _owner=server)
            if time.monotonic() > deadline:
                raise _LaunchError(
                    f"redis-server did not answer PING within {_REDIS_READY_TIMEOUT:g}s "
                    f"({problem}); log:\n{_tail(log_path)}"
                )
            # Waiting on the process wakes us as soon as it exits, unlike a sleep.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)
    except BaseException:
        server.stop()
        raise


def _start_redis_container() -> ServiceHandle:
    container_class = _testcontainers_class(
        "RedisContainer", "testcontainers.community.redis", "testcontainers.redis"
    )
    container = container_class("redis:7-alpine")
    owner = _start_container(container)
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return ServiceHandle("Redis", f"redis://{host}:{port}/0", "testcontainers", _owner=owner)


# --- servers run as a local process (moto, the GCS emulator, pyftpdlib) ------------------------

_PROCESS_READY_TIMEOUT = 30.0


class _Process(_Launched):
    """A server process this module started, with its log file; restartable on its port."""

    def __init__(
        self,
        name: str,
        directory: Path,
        command: Callable[[int], list[str]],
        port: int,
        ready: Callable[[_Process], str | None],
    ) -> None:
        super().__init__(directory)
        self.name = name
        self.command = command
        self.port = port
        self.ready = ready
        self.log_path = directory / f"{name.lower()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] | None = None

    def start(self) -> None:
        """Start the server on ``self.port`` and wait until ``ready`` says it answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(self.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill it first
            )
        _await_ready(
            self.process, self.name, lambda: self.ready(self), _PROCESS_READY_TIMEOUT, self.log_tail
        )

    def kill(self) -> None:
        """SIGKILL the server (no goodbye to its clients) and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Kill the server if it runs, then start it again on the same port and directory."""
        self.kill()
        self.start()

    def log_tail(self) -> str:
        return _tail(self.log_path)

    def _shutdown(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_process(
    name: str,
    prefix: str,
    command: Callable[[int], list[str]],
    ready: Callable[[_Process], str | None],
    *,
    port: int | None = None,
) -> _Process:
    """Start ``command(port)`` in a fresh directory; retry other free ports on a clash."""
    for _ in range(_PORT_ATTEMPTS):
        server = _Process(name, _make_temp_dir(prefix, None), command, port or _free_port(), ready)
        try:
            server.start()
        except _LaunchError as exc:
            server.stop()
            if port is None and "Address already in use" in str(exc):
                continue
            raise
        except BaseException:
            server.stop()
            raise
        return server
    raise _LaunchError(f"every one of {_PORT_ATTEMPTS} free ports was taken before use")


# Runs a module (-m NAME) or script (PATH) after starting a thread that ends the process
# once its parent is gone: a test run killed before its atexit hook leaves no server behind.
_WATCHED = """
import os, runpy, sys, threading
parent = int(sys.argv[1])
def watch():
    while not threading.Event().wait(0.5):
        if os.getppid() != parent:
            os._exit(0)
threading.Thread(target=watch, daemon=True).start()
if sys.argv[2] == "-m":
    sys.argv = [sys.argv[3], *sys.argv[4:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _python(*argv: str) -> list[str]:
    """A Python command line (``-m module ...`` or ``script ...``) that dies with this process."""
    return [sys.executable, "-c", _WATCHED, str(os.getpid()), *argv]


def _log_says(text: str) -> Callable[[_Process], bool]:
    def check(server: _Process) -> bool:
        try:
            return text in server.log_path.read_text(errors="replace")
        except OSError:
            return False

    return check


# --- S3 (moto) ---------------------------------------------------------------------------------

_S3_PROBE_TIMEOUT = 2.0


def _s3_default_urls(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}"]


def _s3_probe(url: str, timeout: float = _S3_PROBE_TIMEOUT) -> str | None:
    """None when ListBuckets answers at ``url`` (an S3 API), else why not."""
    boto3 = require("boto3", "storage-s3")
    config_module = require("botocore.config", "storage-s3")
    endpoint, key, secret = s3_credentials(url)
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=config_module.Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )
    try:
        client.list_buckets()
    except Exception as exc:  # any failure means "not a usable S3 server here"
        return _one_line(exc)
    finally:
        client.close()
    return None


def _start_s3_process() -> ServiceHandle:
    require("moto.server", "storage-s3 (and moto[server] for tests)")
    bound = _log_says("Running on")

    def ready(server: _Process) -> str | None:
        # The log line proves our moto bound the port; the probe that it serves S3.
        if not bound(server):
            return "not listening yet"
        return _s3_probe(f"http://127.0.0.1:{server.port}", timeout=1.0)

    server = _start_process(
        "moto",
        "dtpyfw-s3-",
        lambda port: _python("-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)),
        ready,
    )
    return ServiceHandle("S3", f"http://127.0.0.1:{server.port}", "process", _owner=server)


def _start_s3_container() -> ServiceHandle:
    return _start_http_container(
        "S3", "motoserver/moto:5.0.28", 5000, lambda host, port: f"http://{host}:{port}", _s3_probe
    )


# --- GCS (gcp-storage-emulator) ----------------------------------------------------------------


def _gcs_default_urls(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}"]


def _gcs_probe(url: str, timeout: float = 2.0) -> str | None:
    """None when ``url`` answers the GCS JSON API's bucket listing, else why not."""
    import json
    import urllib.request

    probe = f"{url.rstrip('/')}/storage/v1/b?project=dtpyfw-probe"
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:  # noqa: S310 - http(s) only
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError) as exc:
        return _one_line(exc)
    if not isinstance(body, dict) or body.get("kind") != "storage#buckets":
        return "answered, but not with the GCS JSON API"
    return None


def _start_gcs_process() -> ServiceHandle:
    require("gcp_storage_emulator", "gcp-storage-emulator (a test dependency)")

    def ready(server: _Process) -> str | None:
        return _gcs_probe(f"http://127.0.0.1:{server.port}", timeout=1.0)

    def command(port: int) -> list[str]:
        return _python(
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--quiet",
        )

    server = _start_process("gcs-emulator", "dtpyfw-gcs-", command, ready)
    return ServiceHandle("GCS", f"http://127.0.0.1:{server.port}", "process", _owner=server)


def _start_gcs_container() -> ServiceHandle:
    return _start_http_container(
        "GCS",
        "oittaa/gcp-storage-emulator:latest",
        9023,
        lambda host, port: f"http://{host}:{port}",
        _gcs_probe,
        command="start --host 0.0.0.0 --port 9023 --in-memory",
    )


# --- FTP and FTPS (pyftpdlib) ------------------------------------------------------------------

FTP_TEST_USER = "dtpyfw"
_FTP_LOGIN_ENV = "DTPYFW_TEST_FTP_SERVER_PASSWORD"
_FTP_PROBE_TIMEOUT = 2.0


def _ftp_default_urls(port: int) -> list[str]:
    # The user of containers/ftp.Dockerfile.
    return [f"ftp://user:pass@127.0.0.1:{port}/"]


def _no_default_urls(port: int) -> list[str]:
    return []  # no well-known FTPS test server: its CA file could not be known


def _ftp_normalize(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit(parts._replace(path=parts.path or "/"))


def _ftp_probe(url: str, timeout: float = _FTP_PROBE_TIMEOUT) -> str | None:
    """None when an FTP(S) server at ``url`` accepts its user and password, else why not."""
    import ftplib
    import ssl

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    try:
        if parts.scheme == "ftps":
            cafile = query.get("ca_file", [None])[0]
            context = ssl.create_default_context(cafile=cafile)
            # FTPS on purpose: plain FTP is what some tests need, TLS what the others check.
            session: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=timeout)  # noqa: S321
        else:
            session = ftplib.FTP(timeout=timeout)  # noqa: S321 - the FTP test server itself
        with session:
            session.connect(parts.hostname or "127.0.0.1", parts.port or 21)
            session.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
            if isinstance(session, ftplib.FTP_TLS):
                session.prot_p()
            session.voidcmd("NOOP")
    except (ftplib.Error, OSError, EOFError) as exc:
        return _one_line(exc)
    return None


def _serve_ftp_script() -> str:
    """``_serve_ftp``'s own source as a script: the server process never imports dtpyfw."""
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(_serve_ftp))
    return f"from __future__ import annotations\n{source}\nimport sys\n_serve_ftp(sys.argv[1:])\n"


def _start_ftp_process() -> ServiceHandle:
    return start_ftp_server(tls=False)


def _start_ftps_process() -> ServiceHandle:
    return start_ftp_server(tls=True)


def start_ftp_server(
    *,
    tls: bool,
    hash_command: bool = False,
    lying_hash: bool = False,
    throttle: int = 0,
    root: Path | None = None,
    port: int | None = None,
) -> ServiceHandle:
    """Start a pyftpdlib server in its own process (so a test can kill it).

    ``tls`` makes it FTPS (explicit TLS required on control and data
    connections) with a fresh self-signed certificate for ``IP:127.0.0.1``.
    ``hash_command`` adds the HASH command (SHA-256), which pyftpdlib lacks;
    ``lying_hash`` makes it answer a wrong digest (to test that clients check).
    ``throttle`` caps data transfers at that many bytes per second (plain FTP
    only), so a test can act while a transfer is under way.
    ``root`` (default: a ``root`` folder in the server's directory) survives a
    restart. The handle's ``_owner`` is a ``_Process``: ``kill()`` and
    ``restart()`` it to test reconnection.
    """
    require("pyftpdlib", "pyftpdlib (a test dependency)")
    if tls:
        require("OpenSSL", "pyOpenSSL (a test dependency)")
    password = secrets.token_urlsafe(12)
    state: dict[str, Path] = {}

    def command(port: int) -> list[str]:
        directory = state["directory"]
        # The password travels in the environment (see _Process.env), not in ps output.
        argv = _python(
            str(directory / "serve_ftp.py"),
            f"--root={state['root']}",
            f"--port={port}",
            f"--port-file={directory / 'port'}",
            f"--user={FTP_TEST_USER}",
        )
        if tls:
            argv += [f"--certfile={directory / 'cert.pem'}", f"--keyfile={directory / 'key.pem'}"]
        if hash_command:
            argv.append("--hash")
        if lying_hash:
            argv.append("--lying-hash")
        if throttle:
            argv.append(f"--throttle={throttle}")
        return argv

    def ready(server: _Process) -> str | None:
        port_file = server.directory / "port" if server.directory else None
        if port_file is None or not port_file.exists():
            return "not listening yet"
        server.port = int(port_file.read_text())
        return _ftp_probe(_ftp_url(tls, password, server.port, state), timeout=1.0)

    directory = _make_temp_dir("dtpyfw-ftps-" if tls else "dtpyfw-ftp-", None)
    (directory / "serve_ftp.py").write_text(_serve_ftp_script())
    state["directory"] = directory
    state["root"] = root or directory / "root"
    state["root"].mkdir(parents=True, exist_ok=True)
    if tls:
        _write_self_signed_certificate(directory / "cert.pem", directory / "key.pem")
    # Port 0 lets the server pick a free port itself and report it: no race to lose.
    server = _Process("FTPS" if tls else "FTP", directory, command, port or 0, ready)
    server.env = {**os.environ, _FTP_LOGIN_ENV: password}
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    # A restart comes back on server.port (now the real one) and writes this file anew.
    (directory / "port").unlink(missing_ok=True)
    return ServiceHandle(
        "FTPS" if tls else "FTP",
        _ftp_url(tls, password, server.port, state),
        "process",
        _owner=server,
    )


def _ftp_url(tls: bool, password: str, port: int, state: dict[str, Path]) -> str:
    if not tls:
        return f"ftp://{FTP_TEST_USER}:{password}@127.0.0.1:{port}/"
    ca_file = quote(str(state["directory"] / "cert.pem"), safe="/")
    return f"ftps://{FTP_TEST_USER}:{password}@127.0.0.1:{port}/?ca_file={ca_file}"


def _start_ftp_container() -> ServiceHandle:
    raise _LaunchError(
        "no container for FTP: its passive data ports cannot be mapped to free host ports; "
        "set $DTPYFW_TEST_FTP_URL to the server of containers/compose.yaml instead"
    )


def _write_self_signed_certificate(cert_path: Path, key_path: Path) -> None:
    """A self-signed server certificate for ``IP:127.0.0.1`` (and ``localhost``), one day."""
    import ipaddress

    x509 = require("cryptography.x509", "cryptography (comes with pyOpenSSL)")
    hashes = require("cryptography.hazmat.primitives.hashes", "cryptography")
    serialization = require("cryptography.hazmat.primitives.serialization", "cryptography")
    ec = require("cryptography.hazmat.primitives.asymmetric.ec", "cryptography")
    oid = require("cryptography.x509.oid", "cryptography")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "dtpyfw test FTPS")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _serve_ftp(argv: list[str]) -> None:
    """The FTP server process's main; see :func:`start_ftp_server`.

    It runs from its own source text (:func:`_serve_ftp_script`), so it starts
    in a third of a second instead of importing dtpyfw: it must import
    everything it uses itself and use no global of this module.
    """
    import argparse
    import hashlib
    import importlib
    import logging
    import os
    from pathlib import Path

    authorizers = importlib.import_module("pyftpdlib.authorizers")
    handlers = importlib.import_module("pyftpdlib.handlers")
    servers = importlib.import_module("pyftpdlib.servers")

    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--hash", action="store_true")
    parser.add_argument("--lying-hash", action="store_true")
    parser.add_argument("--throttle", type=int, default=0)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    authorizer = authorizers.DummyAuthorizer()
    password = os.environ["DTPYFW_TEST_FTP_SERVER_PASSWORD"]
    authorizer.add_user(options.user, password, options.root, perm="elradfmwMT")
    base: Any = handlers.TLS_FTPHandler if options.certfile else handlers.FTPHandler

    class Handler(base):  # type: ignore[misc]  # pyftpdlib ships no type hints
        proto_cmds = dict(base.proto_cmds)  # noqa: RUF012 - pyftpdlib's own class attribute
        if options.hash:
            proto_cmds["HASH"] = {
                "perm": "r",
                "auth": True,
                "arg": True,
                "help": "Syntax: HASH <SP> file-name (SHA-256 of the file).",
            }

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if options.hash:
                self._extra_feats.append("HASH SHA-256*")

        def ftp_HASH(self, path: str) -> None:  # noqa: N802 - pyftpdlib dispatches on ftp_<CMD>
            try:
                with open(path, "rb") as file:
                    digest = hashlib.file_digest(file, "sha256").hexdigest()
                if options.lying_hash:
                    digest = hashlib.sha256(digest.encode()).hexdigest()
                size = os.path.getsize(path)
            except OSError as exc:
                self.respond(f"550 {exc.strerror}.")
                return
            self.respond(f"213 SHA-256 0-{max(size - 1, 0)} {digest} {os.path.basename(path)}")

    Handler.authorizer = authorizer
    Handler.auth_failed_timeout = 0.05  # a wrong password answers at once: tests wait less
    Handler.banner = "dtpyfw test FTP server ready."
    if options.throttle and not options.certfile:
        Handler.dtp_handler = type(
            "ThrottledDTP",
            (handlers.ThrottledDTPHandler,),
            {"read_limit": options.throttle, "write_limit": options.throttle},
        )
    if options.certfile:
        Handler.certfile = options.certfile
        Handler.keyfile = options.keyfile
        Handler.tls_control_required = True
        Handler.tls_data_required = True
    server = servers.FTPServer(("127.0.0.1", options.port), Handler)
    port = server.socket.getsockname()[1]
    temp = Path(f"{options.port_file}.tmp")
    temp.write_text(str(port))
    os.replace(temp, options.port_file)  # the launcher never reads a half-written port
    server.serve_forever(handle_exit=True)


# --- containers that serve HTTP ----------------------------------------------------------------


def _start_http_container(
    name: str,
    image: str,
    port: int,
    url_of: Callable[[str, int], str],
    probe: Callable[[str], str | None],
    *,
    command: str | None = None,
) -> ServiceHandle:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError as exc:
        raise _LaunchError("testcontainers is not installed (pip install testcontainers)") from exc
    container = DockerContainer(image).with_exposed_ports(port)
    if command is not None:
        container = container.with_command(command)
    owner = _start_container(container)
    url = url_of(container.get_container_host_ip(), int(container.get_exposed_port(port)))
    deadline = time.monotonic() + _PROCESS_READY_TIMEOUT
    while (problem := probe(url)) is not None:
        if time.monotonic() > deadline:
            owner.stop()
            raise _LaunchError(f"the {name} container did not answer ({problem})")
        time.sleep(0.2)  # a container has no process handle to wait on
    return ServiceHandle(name, url, "testcontainers", _owner=owner)


# --- testcontainers ----------------------------------------------------------------------------


class _Container(_Launched):
    def __init__(self, container: Any) -> None:
        super().__init__(None)
        self.container = container

    def _shutdown(self) -> None:
        self.container.stop()


def _docker_problem() -> str | None:
    """None when a Docker engine answers a ping, else why it does not."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host or host.startswith("unix://"):
        path = host.removeprefix("unix://") or "/var/run/docker.sock"
        if not Path(path).exists():
            return f"no Docker engine ({path} does not exist)"
    try:
        import docker  # type: ignore[import-untyped]  # docker-py ships no type hints
    except ImportError:
        return "the docker package is not installed (pip install testcontainers)"
    problem = None
    with warnings.catch_warnings():
        # docker-py leaks its socket when the engine does not answer; collect it
        # here, where its ResourceWarning is ignored, not later in someone's test.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            problem = f"no Docker engine answered ({_one_line(exc)})"
        gc.collect()
    return problem


def _testcontainers_class(name: str, *modules: str) -> Any:
    # testcontainers >= 4.14 moved the modules under ``community`` and warns on the old path.
    import importlib

    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:
            continue
    raise _LaunchError("testcontainers is not installed (pip install testcontainers)")


def _start_container(container: Any) -> _Container:
    owner = _Container(container)
    try:
        container.start()
    except Exception as exc:
        owner.stop()
        raise _LaunchError(f"the container did not start ({_one_line(exc)})") from exc
    return owner


# --- small helpers -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _make_temp_dir(prefix: str, owner: _RunAs | None) -> Path:
    """A fresh private directory; owned by ``owner`` (who must reach it) when given."""
    parent = tempfile.gettempdir()
    if owner is not None and not _others_can_traverse(Path(parent)):
        parent = "/tmp"  # noqa: S108 - world-traversable by POSIX convention
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if owner is not None:
        os.chown(directory, owner.uid, owner.gid)
    return directory


def _others_can_traverse(path: Path) -> bool:
    return all(os.stat(part).st_mode & 0o001 for part in (path.resolve(), *path.resolve().parents))


def _await_ready(
    process: subprocess.Popen[Any],
    name: str,
    check: Callable[[], str | None],
    timeout: float,
    log: Callable[[], str],
    *,
    pause: float = 0.05,
) -> None:
    """Wait until ``check()`` gives None: the server is ready.

    _LaunchError if ``process`` exits first or ``timeout`` seconds pass; it
    names the last problem ``check`` reported and ends with the log's tail.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise _LaunchError(f"{name} exited ({process.returncode}); log:\n{log()}")
        problem = check()
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise _LaunchError(
                f"{name} did not answer within {timeout:g}s ({problem}); log:\n{log()}"
            )
        # Waiting on the process wakes us as soon as it exits, unlike a sleep.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=pause)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}"


_POSTGRES = _Backend(
    name="PostgreSQL",
    env_var="DTPYFW_TEST_POSTGRES_URL",
    default_port=5432,
    default_urls=_postgres_default_urls,
    normalize=_postgres_normalize,
    probe=_postgres_probe,
    start_process=_start_postgres_process,
    start_container=_start_postgres_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_POSTGRES_URL to a server that answers, start one on "
        "127.0.0.1:5432, install PostgreSQL (scripts/ensure-system-deps.sh) or start Docker."
    ),
)

_REDIS = _Backend(
    name="Redis",
    env_var="DTPYFW_TEST_REDIS_URL",
    default_port=6379,
    default_urls=_redis_default_urls,
    normalize=str.strip,
    probe=_redis_probe,
    start_process=_start_redis_process,
    start_container=_start_redis_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_REDIS_URL to a server that answers, start one on "
        "127.0.0.1:6379, install redis-server (scripts/ensure-system-deps.sh) or start Docker."
    ),
)

_S3 = _Backend(
    name="S3",
    env_var="DTPYFW_TEST_S3_URL",
    default_port=5000,
    default_urls=_s3_default_urls,
    normalize=str.strip,
    probe=_s3_probe,
    start_process=_start_s3_process,
    start_container=_start_s3_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_S3_URL to an S3 server that answers "
        "(http://KEY:SECRET@host:port), start moto_server on 127.0.0.1:5000, install the test "
        "dependencies (moto[server]) or start Docker."
    ),
)

_GCS = _Backend(
    name="GCS",
    env_var="DTPYFW_TEST_GCS_URL",
    default_port=9023,
    default_urls=_gcs_default_urls,
    normalize=str.strip,
    probe=_gcs_probe,
    start_process=_start_gcs_process,
    start_container=_start_gcs_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_GCS_URL to a GCS emulator that answers, start "
        "gcp-storage-emulator on 127.0.0.1:9023, install the test dependencies or start Docker."
    ),
)

_FTP = _Backend(
    name="FTP",
    env_var="DTPYFW_TEST_FTP_URL",
    default_port=2121,
    default_urls=_ftp_default_urls,
    normalize=_ftp_normalize,
    probe=_ftp_probe,
    start_process=_start_ftp_process,
    start_container=_start_ftp_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_FTP_URL (ftp://user:password@host:port/), start "
        "pyftpdlib on 127.0.0.1:2121 with user 'user' and password 'pass', or install the "
        "test dependencies (pyftpdlib)."
    ),
)

_FTPS = _Backend(
    name="FTPS",
    env_var="DTPYFW_TEST_FTPS_URL",
    default_port=0,
    default_urls=_no_default_urls,
    normalize=_ftp_normalize,
    probe=_ftp_probe,
    start_process=_start_ftps_process,
    start_container=_start_ftp_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_FTPS_URL (ftps://user:password@host:port/"
        "?ca_file=PATH) or install the test dependencies (pyftpdlib, pyOpenSSL)."
    ),
)
