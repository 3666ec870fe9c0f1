"""S3Storage against botocore's Stubber: error mapping, retries, metadata encoding, paging.

The Stubber answers in place of S3, so nothing leaves the process; what reaches
a real server is covered by tests/integration/storage.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from dtpyfw.core.errors import (
    AccessDenied,
    InvalidKey,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from dtpyfw.log import capture_logs
from dtpyfw.storage import S3Storage, S3StoreSettings

NOW = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
def store() -> S3Storage:
    """An S3Storage whose endpoint no request can reach (the Stubber answers instead)."""
    settings = S3StoreSettings(
        bucket="media",
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="k",
        secret_access_key="s",
        retry={"attempts": 3, "initial_delay": 0, "jitter": 0},
    )
    return S3Storage(settings)


@pytest.fixture
def stub(store: S3Storage) -> Iterator[Stubber]:
    """The Stubber on the store's client; every queued answer must be used."""
    with Stubber(store.client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def head(metadata: dict[str, str] | None = None, etag: str = "abc") -> dict[str, Any]:
    """A HeadObject answer."""
    return {
        "ContentLength": 3,
        "ETag": f'"{etag}"',
        "ContentType": "text/plain",
        "LastModified": NOW,
        "Metadata": metadata or {},
    }


@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [
        ("AccessDenied", 403, AccessDenied),
        ("InvalidAccessKeyId", 403, AccessDenied),
        ("NoSuchKey", 404, ObjectNotFound),
        ("PreconditionFailed", 412, StorageError),
    ],
)
def test_client_errors_map_to_the_tree_with_the_cause_chained(
    store: S3Storage, stub: Stubber, code: str, status: int, raised: type[StorageError]
) -> None:
    """S3 error codes become AccessDenied / ObjectNotFound / StorageError, chained, not retried."""
    stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with pytest.raises(raised) as info:
        store.get("a.txt")
    assert type(info.value) is raised
    assert isinstance(info.value.__cause__, ClientError)


def test_missing_object_names_the_key(store: S3Storage, stub: Stubber) -> None:
    """A 404 HEAD is ObjectNotFound naming the key."""
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    with pytest.raises(ObjectNotFound, match=r"'docs/x\.txt'"):
        store.stat("docs/x.txt")


def test_transient_errors_are_retried_and_logged(store: S3Storage, stub: Stubber) -> None:
    """SlowDown and 500 are retried under the policy; each retry logs a warning."""
    stub.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
    stub.add_client_error("head_object", service_error_code="InternalError", http_status_code=500)
    stub.add_response("head_object", head(), {"Bucket": "media", "Key": "k"})
    with capture_logs(logger="dtpyfw.storage") as records:
        info = store.stat("k")
    assert info.etag == "abc"
    assert [r["attempt"] for r in records] == [1, 2]
    assert all(r["level"] == "WARNING" and r["operation"] == "stat" for r in records)


def test_retries_stop_after_the_policy(store: S3Storage, stub: Stubber) -> None:
    """After `attempts` transient failures the last one propagates as StorageUnavailable."""
    for _ in range(3):
        stub.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
    with pytest.raises(StorageUnavailable, match="SlowDown"):
        store.stat("k")


def test_missing_bucket_is_a_storage_error_and_ping_says_unavailable(
    store: S3Storage, stub: Stubber
) -> None:
    """NoSuchBucket is not retried; ping reports the bucket as missing."""
    stub.add_client_error("get_object", service_error_code="NoSuchBucket", http_status_code=404)
    stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    with pytest.raises(StorageError, match="bucket 'media' does not exist"):
        store.get("k")
    with pytest.raises(StorageUnavailable, match="bucket 'media' does not exist"):
        store.ping()


def test_non_ascii_metadata_is_sent_rfc2047_encoded_and_decoded(
    store: S3Storage, stub: Stubber
) -> None:
    """Values S3 cannot carry in a header go as =?UTF-8?B?...?= and come back decoded."""
    encoded = "=?UTF-8?B?w7xuw69jb2Rl?="
    stub.add_response(
        "put_object",
        {"ETag": '"abc"'},
        {
            "Bucket": "media",
            "Key": "k.txt",
            "Body": ANY,
            "ContentType": "text/plain",
            "Metadata": {"note": encoded, "plain": "ascii ok"},
        },
    )
    stub.add_response("head_object", head({"note": encoded, "plain": "ascii ok"}))
    # A small put is one PutObject: its answer completes the returned info.
    info = store.put("k.txt", b"abc", metadata={"note": "ünïcode", "plain": "ascii ok"})
    assert (info.size, info.etag) == (3, "abc")
    assert info.metadata == {"note": "ünïcode", "plain": "ascii ok"}
    assert store.stat("k.txt").metadata == {"note": "ünïcode", "plain": "ascii ok"}


def test_metadata_names_must_be_header_tokens(store: S3Storage, stub: Stubber) -> None:
    """A metadata name S3 cannot send is a ValueError before any request."""
    with pytest.raises(ValueError, match="header tokens"):
        store.put("k", b"x", metadata={"bad name": "v"})


def test_listing_follows_continuation_tokens(store: S3Storage, stub: Stubber) -> None:
    """list() reads every page and skips names no key can address (folder markers)."""
    stub.add_response(
        "list_objects_v2",
        {"IsTruncated": True, "NextContinuationToken": "t1", "Contents": [{"Key": "a/1"}]},
        {"Bucket": "media", "Prefix": "a/"},
    )
    stub.add_response("head_object", head(), {"Bucket": "media", "Key": "a/1"})
    stub.add_response(
        "list_objects_v2",
        {"IsTruncated": False, "Contents": [{"Key": "a/2"}, {"Key": "a/dir/"}]},
        {"Bucket": "media", "Prefix": "a/", "ContinuationToken": "t1"},
    )
    stub.add_response("head_object", head(), {"Bucket": "media", "Key": "a/2"})
    assert [info.key for info in store.list("a/")] == ["a/1", "a/2"]


def test_delete_many_batches_existing_keys(store: S3Storage, stub: Stubber) -> None:
    """delete_many HEADs each key, then deletes the ones that exist in one request."""
    stub.add_response("head_object", head(), {"Bucket": "media", "Key": "a"})
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_response(
        "delete_objects",
        {"Deleted": [{"Key": "a"}]},
        {"Bucket": "media", "Delete": {"Objects": [{"Key": "a"}], "Quiet": True}},
    )
    assert store.delete_many(["a", "gone"]) == 1


def test_presigned_url_arguments_are_checked(store: S3Storage) -> None:
    """Unknown methods, lifetimes beyond 7 days and bad keys are refused locally."""
    url = store.presigned_url("docs/a b.txt", expires=60)
    assert url.startswith("http://127.0.0.1:9/media/docs/a%20b.txt?")
    assert "X-Amz-Signature=" in url
    with pytest.raises(ValueError, match="method"):
        store.presigned_url("k", method="PATCH")
    with pytest.raises(ValueError, match="expires"):
        store.presigned_url("k", expires=8 * 24 * 3600)
    with pytest.raises(InvalidKey):
        store.presigned_url("../k")
