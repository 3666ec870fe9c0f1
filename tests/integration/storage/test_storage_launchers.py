"""The S3 and GCS launchers and fixtures: env URL first, a local process otherwise, CI strict."""

from __future__ import annotations

import socket
import textwrap
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from dtpyfw.testing._backends import _gcs_request, _s3_client
from dtpyfw.testing._launchers import BackendUnavailable, ServiceHandle, find_gcs, find_s3

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


def test_env_url_wins_and_is_not_stopped(
    s3_service: ServiceHandle, gcs_service: ServiceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL in DTPYFW_TEST_S3_URL / _GCS_URL that answers is used as is; stop() leaves it."""
    monkeypatch.setenv("DTPYFW_TEST_S3_URL", s3_service.url)
    monkeypatch.setenv("DTPYFW_TEST_GCS_URL", gcs_service.url)
    for find, service in [(find_s3, s3_service), (find_gcs, gcs_service)]:
        handle = find()
        assert (handle.origin, handle.url) == ("env", service.url)
        handle.stop()
        assert not refuses(service.url)


@pytest.mark.parametrize(("find", "variable"), [(find_s3, "S3"), (find_gcs, "GCS")])
def test_env_url_that_does_not_answer_names_it(
    find: object, variable: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead env URL is an error naming the variable, with the secret masked."""
    monkeypatch.setenv(f"DTPYFW_TEST_{variable}_URL", f"http://key:s3cret@127.0.0.1:{closed_port}")
    with pytest.raises(BackendUnavailable) as raised:
        find()  # type: ignore[operator]
    assert f"DTPYFW_TEST_{variable}_URL" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert len(raised.value.tried) == 1


def test_launched_emulator_is_a_separate_process_that_stop_ends() -> None:
    """launch="always" starts gcp-storage-emulator in its own process; stop() ends it."""
    handle = find_gcs(launch="always")
    try:
        assert handle.origin == "process"
        listing = f"{handle.url}/storage/v1/b?project=p"  # http://127.0.0.1:<port>
        with urllib.request.urlopen(listing, timeout=5) as answer:  # noqa: S310
            assert b"storage#buckets" in answer.read()
        assert handle._owner is not None
        directory = handle._owner.directory
        assert directory is not None
        assert directory.is_dir()
    finally:
        handle.stop()
    assert refuses(handle.url)
    assert not directory.exists()
    handle.stop()  # a second stop is harmless


def test_bucket_fixtures_give_fresh_buckets_and_drop_them(
    pytester: pytest.Pytester,
    s3_service: ServiceHandle,
    gcs_service: ServiceHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """s3_bucket / gcs_bucket are new and empty per test and gone (with objects) after it."""
    monkeypatch.setenv("DTPYFW_TEST_S3_URL", s3_service.url)
    monkeypatch.setenv("DTPYFW_TEST_GCS_URL", gcs_service.url)
    record = pytester.path / "buckets.txt"
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import pytest
            from dtpyfw.storage import GcsStorage, GcsStoreSettings, S3Storage, S3StoreSettings
            from dtpyfw.testing._launchers import s3_credentials

            @pytest.mark.parametrize("run", [1, 2])
            def test_buckets(s3_url, s3_bucket, gcs_url, gcs_bucket, run):
                endpoint, key, secret = s3_credentials(s3_url)
                s3 = S3Storage(S3StoreSettings(bucket=s3_bucket, endpoint_url=endpoint,
                    access_key_id=key, secret_access_key=secret, region="us-east-1"))
                gcs = GcsStorage(GcsStoreSettings(bucket=gcs_bucket, endpoint=gcs_url,
                    anonymous=True))
                for store in (s3, gcs):
                    assert list(store.list()) == []
                    store.put("left/behind.txt", b"x")
                with open({str(record)!r}, "a") as out:
                    out.write(f"{{s3_bucket}} {{gcs_bucket}}\\n")
            """
        )
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(passed=2)
    names = record.read_text().split()
    assert len(set(names)) == 4
    existing = {b["Name"] for b in _s3_client(s3_service.url).list_buckets()["Buckets"]}
    listing = _gcs_request(gcs_service.url, "GET", "/storage/v1/b?project=p") or {}
    existing |= {item["name"] for item in listing.get("items", [])}
    assert existing.isdisjoint(names)


def test_missing_backends_fail_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    """With CI set, unreachable S3 and FTP fail the tests that need them instead of skipping."""
    monkeypatch.setenv("DTPYFW_TEST_S3_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("DTPYFW_TEST_FTP_URL", f"ftp://u:p@127.0.0.1:{closed_port}/")
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(
        "def test_needs_s3(s3_bucket):\n    pass\n\n\ndef test_needs_ftp(ftp_url):\n    pass\n"
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*CI is set: a missing backend fails the run*"])
