"""The fake-gcs-server and s3proxy launchers: env URL first, a watched process otherwise.

Both servers are programs (Go, Java) run under the ``_native.watched`` Python
watcher; these tests check that ``stop()`` ends the watcher *and* the server,
and that a test process killed outright takes its servers with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dtpyfw.core.errors import AccessDenied
from dtpyfw.storage import S3Storage, S3StoreSettings
from dtpyfw.testing import BackendUnavailable, ServiceHandle, find_fake_gcs, find_s3proxy
from dtpyfw.testing._backends import _dtpyfw_s3_client as _client
from dtpyfw.testing._backends import _gcs_request
from dtpyfw.testing._launchers import _Process, s3_credentials
from dtpyfw.testing._wait import wait_until

_INNER_ARGS = ("-p", "no:asyncio", "-p", "no:cacheprovider", "-rs")
FINDERS: dict[str, Callable[..., ServiceHandle]] = {
    "fake-gcs-server": find_fake_gcs,
    "s3proxy": find_s3proxy,
}
VARIABLES = {"fake-gcs-server": "FAKE_GCS", "s3proxy": "S3PROXY"}


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


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def answers(name: str, url: str) -> None:
    """Assert the server at ``url`` serves its API (and, for s3proxy, checks signatures)."""
    if name == "fake-gcs-server":
        assert (_gcs_request(url, "GET", "/storage/v1/b?project=p") or {}).get(
            "kind"
        ) == "storage#buckets"
        return
    endpoint, key, _ = s3_credentials(url)
    _client(url).list_buckets()
    forged = S3StoreSettings(
        bucket="nowhere",
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id=key,
        secret_access_key="wrong",
        addressing_style="path",
    )
    with pytest.raises(AccessDenied):
        S3Storage(forged).ping()


@pytest.mark.parametrize("name", sorted(FINDERS))
def test_launched_server_answers_and_stop_leaves_no_process(name: str) -> None:
    """launch="always" starts the server under its watcher; stop() ends both, removes the dir."""
    handle = FINDERS[name](launch="always")
    try:
        assert handle.origin == "process"
        assert isinstance(handle._owner, _Process)
        watcher = handle._owner.process
        assert watcher is not None
        (server,) = children(watcher.pid)
        answers(name, handle.url)
        directory = handle._owner.directory
        assert directory is not None
        assert directory.is_dir()
    finally:
        handle.stop()
    assert not alive(watcher.pid)
    wait_until(lambda: not alive(server), 10, what=f"{name} (pid {server}) exiting")
    assert refuses(handle.url)
    assert not directory.exists()
    handle.stop()  # a second stop is harmless


@pytest.mark.parametrize("name", sorted(FINDERS))
def test_server_dies_with_a_killed_test_process(name: str, tmp_path: Path) -> None:
    """SIGKILL to the process that launched the server (no atexit hook) ends the server too."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from dtpyfw.testing import {FINDERS[name].__name__} as find
        handle = find(launch="always")
        print(handle.url, handle._owner.process.pid, flush=True)
        sys.stdin.read()  # until the test kills us
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as launcher:
        try:
            assert launcher.stdout is not None
            url, watcher = launcher.stdout.readline().split()
            (server,) = children(int(watcher))
            answers(name, url)
        finally:
            launcher.kill()
    # The orphaned watcher notices within its 0.5 s poll and ends the server, then itself.
    wait_until(lambda: not alive(server), 15, what=f"{name} (pid {server}) exiting")
    wait_until(lambda: not alive(int(watcher)), 15, what=f"its watcher (pid {watcher}) exiting")
    assert refuses(url)


@pytest.mark.parametrize("name", sorted(FINDERS))
def test_sigkilled_watcher_takes_the_server_with_it(name: str) -> None:
    """_Process.kill() SIGKILLs the watcher: the server gets its parent-death signal."""
    handle = FINDERS[name](launch="always")
    try:
        assert isinstance(handle._owner, _Process)
        assert handle._owner.process is not None
        (server,) = children(handle._owner.process.pid)
        handle._owner.kill()
        wait_until(lambda: not alive(server), 10, what=f"{name} (pid {server}) exiting")
    finally:
        handle.stop()


def test_env_urls_win_and_are_not_stopped(
    fake_gcs_service: ServiceHandle, s3proxy_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL in DTPYFW_TEST_FAKE_GCS_URL / _S3PROXY_URL that answers is used as is."""
    monkeypatch.setenv("DTPYFW_TEST_FAKE_GCS_URL", fake_gcs_service.url)
    monkeypatch.setenv("DTPYFW_TEST_S3PROXY_URL", s3proxy_service.url)
    for find, service in [(find_fake_gcs, fake_gcs_service), (find_s3proxy, s3proxy_service)]:
        handle = find()
        assert (handle.origin, handle.url) == ("env", service.url)
        handle.stop()
        assert not refuses(service.url)


@pytest.mark.parametrize("name", sorted(FINDERS))
def test_env_url_that_does_not_answer_names_it(
    name: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead env URL is an error naming the variable, with the secret masked."""
    variable = f"DTPYFW_TEST_{VARIABLES[name]}_URL"
    monkeypatch.setenv(variable, f"http://key:s3cret@127.0.0.1:{closed_port}")
    with pytest.raises(BackendUnavailable) as raised:
        FINDERS[name]()
    assert variable in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert len(raised.value.tried) == 1


def test_s3proxy_env_url_must_check_signatures(
    s3_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto in DTPYFW_TEST_S3PROXY_URL is refused: it accepts a wrong secret."""
    monkeypatch.setenv("DTPYFW_TEST_S3PROXY_URL", s3_service.url)
    with pytest.raises(BackendUnavailable, match="checks no signatures"):
        find_s3proxy()


def test_bucket_fixtures_give_fresh_buckets_and_drop_them(
    pytester: pytest.Pytester,
    fake_gcs_service: ServiceHandle,
    s3proxy_service: ServiceHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fake_gcs_bucket / s3proxy_bucket are new and empty per test and gone (with objects) after."""
    monkeypatch.setenv("DTPYFW_TEST_FAKE_GCS_URL", fake_gcs_service.url)
    monkeypatch.setenv("DTPYFW_TEST_S3PROXY_URL", s3proxy_service.url)
    record = pytester.path / "buckets.txt"
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import pytest
            from dtpyfw.storage import GcsStorage, GcsStoreSettings, S3Storage, S3StoreSettings
            from dtpyfw.testing._launchers import s3_credentials

            @pytest.mark.parametrize("run", [1, 2])
            def test_buckets(s3proxy_url, s3proxy_bucket, fake_gcs_url, fake_gcs_bucket, run):
                endpoint, key, secret = s3_credentials(s3proxy_url)
                s3 = S3Storage(S3StoreSettings(bucket=s3proxy_bucket, endpoint_url=endpoint,
                    access_key_id=key, secret_access_key=secret, region="us-east-1",
                    addressing_style="path"))
                gcs = GcsStorage(GcsStoreSettings(bucket=fake_gcs_bucket, endpoint=fake_gcs_url,
                    anonymous=True))
                for store in (s3, gcs):
                    assert list(store.list()) == []
                    store.put("left/behind.txt", b"x")
                    store.close()
                with open({str(record)!r}, "a") as out:
                    out.write(f"{{s3proxy_bucket}} {{fake_gcs_bucket}}\\n")
            """
        )
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=2)
    names = record.read_text().split()
    assert len(set(names)) == 4
    existing = {b["Name"] for b in _client(s3proxy_service.url).list_buckets()["Buckets"]}
    listing = _gcs_request(fake_gcs_service.url, "GET", "/storage/v1/b?project=p") or {}
    existing |= {item["name"] for item in listing.get("items", [])}
    assert existing.isdisjoint(names)


def test_missing_servers_fail_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    """With CI set, unreachable fake-gcs-server and s3proxy fail the tests instead of skipping."""
    monkeypatch.setenv("DTPYFW_TEST_FAKE_GCS_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("DTPYFW_TEST_S3PROXY_URL", f"http://k:s@127.0.0.1:{closed_port}")
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(
        "def test_needs_gcs(fake_gcs_bucket):\n    pass\n\n\n"
        "def test_needs_s3(s3proxy_bucket):\n    pass\n"
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*CI is set: a missing backend fails the run*"])


def test_watcher_forwards_sigterm_and_reports_the_exit(tmp_path: Path) -> None:
    """SIGTERM to the watcher reaches the program; the watcher exits with its status."""
    from dtpyfw.testing._native import watched

    script = tmp_path / "server.py"
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "while True:\n    time.sleep(1)\n"
    )
    with subprocess.Popen(
        watched(sys.executable, str(script)), stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 7
