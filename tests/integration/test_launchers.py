"""The backend launchers (dtpyfw.testing._launchers) and the fixtures built on them.

Launch paths are proven without touching the machine's own servers: a test that
needs "nothing answers on the default port" gives :func:`_find` a copy of the
backend description whose default port is a socket bound but never listening,
which refuses connections for as long as the test holds it.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from dtpyfw.testing import _backends, _launchers
from dtpyfw.testing._launchers import (
    BackendUnavailable,
    ServiceHandle,
    find_postgres,
    find_redis,
)

# Inner pytest sessions get the fixtures the way users do: from the dtpyfw plugin.
_INNER_ARGS = ("-p", "no:asyncio", "-p", "no:cacheprovider", "-rs")


@dataclass(frozen=True)
class Case:
    """One backend, as the parametrised tests see it."""

    backend: _launchers._Backend
    find: Callable[..., ServiceHandle]
    launchable: Callable[[], bool]
    exercise: Callable[[str], None]  # proves a client can use the server at the URL
    secret_url: str  # a URL with a password, formatted with a port


def _exercise_postgres(url: str) -> None:
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _exercise_redis(url: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.set("dtpyfw-launcher", "works")
        assert client.get("dtpyfw-launcher") == b"works"


CASES = [
    Case(
        _launchers._POSTGRES,
        find_postgres,
        lambda: _launchers._postgres_binaries() is not None,
        _exercise_postgres,
        "postgresql+psycopg://app:s3cret@127.0.0.1:{port}/app",
    ),
    Case(
        _launchers._REDIS,
        find_redis,
        lambda: shutil.which("redis-server") is not None,
        _exercise_redis,
        "redis://:s3cret@127.0.0.1:{port}/0",
    ),
]
IDS = ["postgres", "redis"]


def _require_launchable(case: Case) -> None:
    if not case.launchable():
        message = f"no {case.backend.name} binaries to launch (scripts/ensure-system-deps.sh)"
        if _backends._running_in_ci():
            pytest.fail(message)
        pytest.skip(message)


def _refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the DTPYFW_TEST_*_URL variables so the search starts at the default port."""
    for case in CASES:
        monkeypatch.delenv(case.backend.env_var, raising=False)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def launched(request: pytest.FixtureRequest) -> Iterator[tuple[Case, ServiceHandle]]:
    """A server started by the launcher, shared by the tests of one backend."""
    case: Case = request.param
    _require_launchable(case)
    with case.find(launch="always") as handle:
        yield case, handle


# --- the launchers -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_launch_always_starts_a_usable_server_that_stop_removes(case: Case) -> None:
    """launch="always" starts a private server on a free port; stop() ends it and its directory."""
    _require_launchable(case)
    handle = case.find(launch="always")
    try:
        assert handle.origin == "process"
        assert f":{case.backend.default_port}/" not in handle.url
        case.exercise(handle.url)
        assert handle._owner is not None
        directory = handle._owner.directory
        assert directory is not None
        assert directory.is_dir()
    finally:
        handle.stop()
    assert _refuses_connections(handle.url)
    assert not directory.exists()
    handle.stop()  # a second stop is harmless


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_auto_launches_a_process_when_the_default_port_is_closed(
    case: Case, closed_port: int
) -> None:
    """launch="auto" falls through to starting a process when no server answers."""
    _require_launchable(case)
    backend = dataclasses.replace(case.backend, default_port=closed_port)
    with _launchers._find(backend, launch="auto") as handle:
        assert handle.origin == "process"
        assert f":{closed_port}/" not in handle.url
        case.exercise(handle.url)
    assert _refuses_connections(handle.url)


def test_env_url_is_returned_as_is(
    launched: tuple[Case, ServiceHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL in DTPYFW_TEST_*_URL wins over the default port and is not stopped by stop()."""
    case, server = launched
    monkeypatch.setenv(case.backend.env_var, server.url)
    handle = case.find()
    assert (handle.origin, handle.url) == ("env", server.url)
    handle.stop()
    case.exercise(server.url)


@pytest.mark.parametrize("launch", ["auto", "never"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_env_url_that_does_not_answer_is_an_error_naming_it(
    case: Case, launch: _launchers.Launch, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An env URL is trusted but verified: when it does not answer nothing else is tried."""
    monkeypatch.setenv(case.backend.env_var, case.secret_url.format(port=closed_port))
    with pytest.raises(BackendUnavailable) as raised:
        case.find(launch=launch)
    assert len(raised.value.tried) == 1
    assert case.backend.env_var in str(raised.value)
    assert f"127.0.0.1:{closed_port}/" in str(raised.value)
    assert "s3cret" not in str(raised.value)


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_never_lists_every_place_tried(case: Case, closed_port: int) -> None:
    """launch="never" gives up after the env var and the default port, naming both."""
    backend = dataclasses.replace(case.backend, default_port=closed_port)
    with pytest.raises(BackendUnavailable) as raised:
        _launchers._find(backend, launch="never")
    message = str(raised.value)
    assert f"${case.backend.env_var}: not set" in message
    assert f"127.0.0.1:{closed_port}/" in message
    assert "launch='never'" in message


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unavailable_when_nothing_can_be_started(case: Case, closed_port: int) -> None:
    """When no process or container starts, the error lists the reason for each."""

    def cannot_start() -> ServiceHandle:
        raise _launchers._LaunchError("no binary here")

    backend = dataclasses.replace(
        case.backend,
        default_port=closed_port,
        start_process=cannot_start,
        start_container=cannot_start,
    )
    with pytest.raises(BackendUnavailable) as raised:
        _launchers._find(backend, launch="auto")
    assert raised.value.tried[-2] == "a local server process: no binary here"
    assert raised.value.tried[-1].startswith("testcontainers: ")
    assert "scripts/ensure-system-deps.sh" in str(raised.value)


def test_redis_port_clash_is_detected_not_mistaken_for_success() -> None:
    """A redis-server that cannot bind is not confused with the server already on that port."""
    _require_launchable(CASES[1])
    with find_redis(launch="always") as running:
        port = urlsplit(running.url).port
        assert port is not None
        executable = shutil.which("redis-server")
        assert executable is not None
        assert _launchers._start_redis_once(executable, port) is None


def test_postgres_port_clash_reports_the_server_log(taken_port: int) -> None:
    """A failed pg_ctl start names the cause and carries the tail of the server log."""
    _require_launchable(CASES[0])
    binaries = _launchers._postgres_binaries()
    assert binaries is not None
    initdb, pg_ctl = binaries
    run_as = _launchers._postgres_run_as()
    server = _launchers._PostgresServer(
        _launchers._make_temp_dir("dtpyfw-postgres-", run_as), pg_ctl, run_as
    )
    try:
        init = server.run(initdb, "-D", server.data, "-A", "trust", "-U", "postgres", timeout=120)
        assert init.returncode == 0, init.stderr
        failure = server.start(taken_port)
    finally:
        server.stop()
    assert failure is not None
    assert "log tail:" in failure
    assert "Address already in use" in failure


def test_unknown_launch_mode_is_rejected() -> None:
    """A launch mode other than auto/always/never is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="launch must be"):
        find_redis(launch="sometimes")  # type: ignore[arg-type]


class _FakeServer(_launchers._Launched):
    def __init__(self) -> None:
        super().__init__(None)
        self.shutdowns = 0

    def _shutdown(self) -> None:
        self.shutdowns += 1


def test_leaked_handle_warns() -> None:
    """A launched handle dropped without stop() raises a ResourceWarning naming it."""
    server = _FakeServer()
    handle = ServiceHandle("Fake", "fake://", "process", _owner=server)
    with pytest.warns(ResourceWarning, match="never stopped"):
        del handle  # CPython finalises it right here: this was the last reference
    server.stop()
    server.stop()
    assert server.shutdowns == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_launched_server_does_not_outlive_the_interpreter(case: Case) -> None:
    """A server the program never stopped is stopped, and its directory removed, at exit."""
    _require_launchable(case)
    program = textwrap.dedent(
        f"""
        from dtpyfw.testing._launchers import {case.find.__name__}
        handle = {case.find.__name__}(launch="always")
        print(handle.url)
        print(handle._owner.directory)
        """
    )
    child = subprocess.run(
        [sys.executable, "-W", "error", "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stderr == ""
    url, directory = child.stdout.split()
    assert _refuses_connections(url)
    assert not Path(directory).exists()


@pytest.mark.parametrize(
    ("value", "in_ci"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("", False), ("false", False)],
)
def test_ci_variable_values(value: str, in_ci: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI counts as set for true/1/yes in any case, and for nothing else."""
    monkeypatch.setenv("CI", value)
    assert _backends._running_in_ci() is in_ci


# --- the fixtures, run in inner pytest sessions ------------------------------------------------


def test_postgres_dsn_is_a_fresh_database_dropped_after_the_test(
    pytester: pytest.Pytester, postgres_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own empty database (both create the same table); both are dropped."""
    record = pytester.path / "dsns.txt"
    monkeypatch.setenv("DTPYFW_TEST_POSTGRES_URL", postgres_service.url)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import psycopg
            import pytest

            @pytest.mark.parametrize("run", [1, 2])
            def test_creates_a_table(postgres_dsn, postgres_url, run):
                assert postgres_url == postgres_dsn.replace("postgresql://",
                                                            "postgresql+psycopg://", 1)
                with psycopg.connect(postgres_dsn) as conn:
                    conn.execute("CREATE TABLE marker (id int)")
                with open({str(record)!r}, "a") as out:
                    out.write(postgres_dsn + "\\n")
            """
        )
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=2)
    names = [dsn.rsplit("/", 1)[1] for dsn in record.read_text().split()]
    assert len(set(names)) == 2
    assert all(name.startswith("dtpyfw_t_") for name in names)
    with psycopg.connect(postgres_service.url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [names]
        ).fetchall()
    assert rows == []


def test_redis_url_is_flushed_before_and_after_the_test(
    pytester: pytest.Pytester, redis_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis_url points at db 15, empty when the test starts and again after it ends."""
    record = pytester.path / "url.txt"
    monkeypatch.setenv("DTPYFW_TEST_REDIS_URL", redis_service.url)
    reserved = _backends._with_path(redis_service.url, "/15")
    with redis.Redis.from_url(reserved) as client:
        client.set("left-over-from-before", "1")
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import redis

            def test_starts_empty_and_leaves_a_key(redis_url):
                with redis.Redis.from_url(redis_url) as client:
                    assert client.dbsize() == 0
                    client.set("left-over-from-the-test", "1")
                with open({str(record)!r}, "w") as out:
                    out.write(redis_url)
            """
        )
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=1)
    assert record.read_text() == reserved
    with redis.Redis.from_url(reserved) as client:
        assert client.dbsize() == 0


@pytest.mark.parametrize(("ci", "outcome"), [("true", "errors"), (None, "skipped")])
def test_missing_backend_skips_locally_and_fails_in_ci(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    closed_port: int,
    ci: str | None,
    outcome: str,
) -> None:
    """An unavailable backend skips its tests, except with CI=true where it fails them."""
    url = f"redis://127.0.0.1:{closed_port}/0"
    monkeypatch.setenv("DTPYFW_TEST_REDIS_URL", url)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile("def test_needs_redis(redis_service):\n    pass\n")
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(**{outcome: 1})
    assert url in result.stdout.str()
