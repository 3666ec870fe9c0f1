"""What S3Storage sends S3-compatible servers: no flexible checksums, Content-MD5 on DeleteObjects.

botocore >= 1.36 adds CRC32 checksum headers that s3proxy (and older MinIO and
Ceph) refuse. The requests are captured at ``before-send``, after signing, so
nothing leaves the process; tests/integration/storage runs them on s3proxy.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from dtpyfw.storage import S3Storage, S3StoreSettings

DELETE_ANSWER = b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult></DeleteResult>'


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def settings(endpoint_url: str | None) -> S3StoreSettings:
    """Settings for AWS (None) or an S3-compatible server at ``endpoint_url``."""
    return S3StoreSettings(
        bucket="media",
        endpoint_url=endpoint_url,
        region="us-east-1",
        access_key_id="k",
        secret_access_key="s",
    )


def sent_headers(store: S3Storage, call: Any, answer: bytes = b"") -> dict[str, str]:
    """The headers of the request ``call(store)`` sends, answered with 200 ``answer``."""
    captured: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> AWSResponse:
        for name, value in request.headers.items():
            captured[name.lower()] = value.decode() if isinstance(value, bytes) else value
        if isinstance(request.body, bytes):
            digest = hashlib.md5(request.body, usedforsecurity=False).digest()
            captured["body-md5"] = base64.b64encode(digest).decode()
        return AWSResponse(request.url, 200, {}, _Body(answer))  # type: ignore[arg-type]

    store.client.meta.events.register_first("before-send.s3", capture)
    call(store)
    return captured


@pytest.mark.parametrize(
    ("endpoint", "mode"), [(None, "when_supported"), ("http://s3", "when_required")]
)
def test_checksums_are_only_sent_when_required_to_compatible_servers(
    endpoint: str | None, mode: str
) -> None:
    """AWS keeps botocore's default checksums; other servers get them only when required."""
    config = S3Storage(settings(endpoint)).client.meta.config
    assert (config.request_checksum_calculation, config.response_checksum_validation) == (
        mode,
        mode,
    )


def test_put_to_a_compatible_server_carries_no_checksum_header() -> None:
    """PutObject sends no x-amz-checksum-* header that a server might not implement."""
    store = S3Storage(settings("http://127.0.0.1:9"))
    headers = sent_headers(store, lambda s: s.client.put_object(Bucket="media", Key="k", Body=b"x"))
    assert not [name for name in headers if "checksum" in name]


def test_delete_objects_to_a_compatible_server_sends_a_signed_content_md5() -> None:
    """DeleteObjects carries Content-MD5 of its body, covered by the signature, and no CRC32."""
    store = S3Storage(settings("http://127.0.0.1:9"))
    request = {"Objects": [{"Key": "a"}, {"Key": "b"}], "Quiet": True}
    headers = sent_headers(
        store,
        lambda s: s.client.delete_objects(Bucket="media", Delete=request),
        DELETE_ANSWER,
    )
    assert headers["content-md5"] == headers["body-md5"]
    assert not [name for name in headers if "checksum" in name]
    assert "content-md5" in headers["authorization"].split("SignedHeaders=")[1].split(",")[0]


def test_delete_objects_to_aws_keeps_botocore_checksum() -> None:
    """Against AWS the request is left as botocore makes it (a CRC32 checksum)."""
    store = S3Storage(settings(None))
    request = {"Objects": [{"Key": "a"}], "Quiet": True}
    headers = sent_headers(
        store,
        lambda s: s.client.delete_objects(Bucket="media", Delete=request),
        DELETE_ANSWER,
    )
    assert "x-amz-checksum-crc32" in headers
    assert "content-md5" not in headers
