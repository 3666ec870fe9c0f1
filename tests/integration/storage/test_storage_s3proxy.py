"""Presigned S3 URLs against s3proxy, which checks signatures and expiry (moto checks neither).

Every request is real HTTP (httpx) to the URL S3Storage made. An intact URL
works; one that expired, or whose signature, key, lifetime or method was
changed, is refused with 403 and changes nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from dtpyfw.core.errors import AccessDenied
from dtpyfw.storage import S3Storage, S3StoreSettings
from dtpyfw.testing import wait_until

#: Bound on waiting for a 1-second URL to expire: generous for a loaded machine.
EXPIRY_WAIT = 15.0


@pytest.fixture
def store(s3proxy_raw_settings: dict[str, Any]) -> S3Storage:
    """An S3Storage on a fresh s3proxy bucket."""
    return S3Storage(S3StoreSettings.model_validate(s3proxy_raw_settings))


def with_query(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced (their order kept)."""
    parts = urlsplit(url)
    query = [(name, changes.get(name, value)) for name, value in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def flipped(signature: str) -> str:
    """``signature`` with its last hex digit changed."""
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


def refused(response: httpx.Response, code: str) -> bool:
    """True when S3 answered 403 with the error ``code``."""
    return response.status_code == 403 and f"<Code>{code}</Code>" in response.text


def test_intact_presigned_get_and_put_work(store: S3Storage) -> None:
    """The URLs as made work over HTTP: GET reads, PUT writes with the uploader's type."""
    store.put("shared/report.txt", b"for your eyes")
    got = httpx.get(store.presigned_url("shared/report.txt", expires=60))
    assert (got.status_code, got.content) == (200, b"for your eyes")
    put = httpx.put(
        store.presigned_url("inbox/a.csv", method="PUT", expires=60),
        content=b"a,b\n",
        headers={"Content-Type": "text/csv"},
    )
    assert put.status_code == 200
    assert store.get("inbox/a.csv") == b"a,b\n"
    assert store.stat("inbox/a.csv").content_type == "text/csv"


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_expired_presigned_url_is_refused(store: S3Storage, method: str) -> None:
    """A URL that lived 1 s is refused once it expired: 403 AccessDenied, nothing written."""
    store.put("k", b"original")
    url = store.presigned_url("k", method=method, expires=1)

    def send() -> httpx.Response:
        return httpx.request(method, url, content=b"overwritten" if method == "PUT" else None)

    # The first requests may still be in time (a PUT then really writes): wait for expiry.
    last: list[httpx.Response] = []

    def expired() -> bool:
        last[:] = [send()]
        return last[0].status_code != 200

    wait_until(expired, EXPIRY_WAIT, interval=0.1, what=f"{method} URL expiring")
    assert refused(last[0], "AccessDenied"), last[0].text
    assert "expired" in last[0].text
    store.put("k", b"original")
    assert refused(send(), "AccessDenied")
    assert store.get("k") == b"original"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: with_query(url, **{"X-Amz-Signature": flipped(parse(url)["X-Amz-Signature"])}),
        lambda url: url.replace("/shared/doc.txt?", "/shared/other.txt?"),
        lambda url: with_query(url, **{"X-Amz-Expires": "604800"}),
        lambda url: with_query(url, **{"X-Amz-Credential": "x" + parse(url)["X-Amz-Credential"]}),
    ],
    ids=["signature", "key", "lifetime", "access-key"],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_tampered_presigned_url_is_refused(store: S3Storage, method: str, tamper: Any) -> None:
    """Changing the signature, key, lifetime or access key of a URL makes s3proxy refuse it."""
    store.put("shared/doc.txt", b"original")
    store.put("shared/other.txt", b"other")
    url = store.presigned_url("shared/doc.txt", method=method, expires=300)
    forged = tamper(url)
    assert forged != url
    answer = httpx.request(method, forged, content=b"forged" if method == "PUT" else None)
    assert answer.status_code == 403, answer.text
    assert "<Code>" in answer.text  # an S3 error document, not some proxy's page
    assert store.get("shared/doc.txt") == b"original"
    assert store.get("shared/other.txt") == b"other"
    # The untouched URL still works: only the change was refused.
    intact = httpx.request(method, url, content=b"changed" if method == "PUT" else None)
    assert intact.status_code == 200


def test_url_for_one_method_is_refused_for_another(store: S3Storage) -> None:
    """The method is signed: a GET URL cannot PUT or DELETE."""
    store.put("k", b"original")
    url = store.presigned_url("k", expires=60)
    assert httpx.put(url, content=b"forged").status_code == 403
    assert httpx.delete(url).status_code == 403
    assert store.get("k") == b"original"


def test_a_wrong_secret_is_access_denied(s3proxy_raw_settings: dict[str, Any]) -> None:
    """A store configured with a wrong secret gets AccessDenied, not a retry or a 'not found'."""
    store = S3Storage(
        S3StoreSettings.model_validate({**s3proxy_raw_settings, "secret_access_key": "wrong"})
    )
    with pytest.raises(AccessDenied):
        store.put("k", b"x")
    with pytest.raises(AccessDenied):
        store.get("k")
    url = store.presigned_url("k", expires=60)  # signing is local: it succeeds, then fails
    assert refused(httpx.get(url), "SignatureDoesNotMatch")


def parse(url: str) -> dict[str, str]:
    """The query parameters of ``url``."""
    return dict(parse_qsl(urlsplit(url).query))
