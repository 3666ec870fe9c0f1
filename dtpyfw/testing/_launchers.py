"""Find, or start, the PostgreSQL and Redis servers that tests talk to.

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
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ServiceHandle",
    "find_postgres",
    "find_redis",
]

import atexit
import contextlib
import gc
import getpass
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

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
