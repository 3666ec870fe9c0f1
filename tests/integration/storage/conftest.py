"""Settings for the network storage backends, pointing at the servers the harness launched."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from dtpyfw.testing._launchers import s3_credentials


@functools.cache
def fake_service_account() -> str:
    """A throwaway service-account key: it signs URLs, which the GCS emulators accept unchecked."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "dtpyfw-tests",
            "private_key_id": "test-key",
            "private_key": pem,
            "client_email": "tests@dtpyfw-tests.iam.gserviceaccount.com",
            "client_id": "1",
            # Never contacted: anonymous API calls need no token.
            "token_uri": "http://127.0.0.1:9/token",
        }
    )


@pytest.fixture
def s3_raw_settings(s3_url: str, s3_bucket: str) -> dict[str, Any]:
    """A ``storage`` section (plain data) for a fresh bucket on the test S3 server (moto)."""
    return s3_settings(s3_url, s3_bucket)


@pytest.fixture
def s3proxy_raw_settings(s3proxy_url: str, s3proxy_bucket: str) -> dict[str, Any]:
    """A ``storage`` section for a fresh bucket on s3proxy, which checks signatures."""
    return s3_settings(s3proxy_url, s3proxy_bucket)


@pytest.fixture
def gcs_raw_settings(gcs_url: str, gcs_bucket: str) -> dict[str, Any]:
    """A ``storage`` section (plain data) for a fresh bucket on gcp-storage-emulator."""
    return gcs_settings(gcs_url, gcs_bucket)


@pytest.fixture
def fake_gcs_raw_settings(fake_gcs_url: str, fake_gcs_bucket: str) -> dict[str, Any]:
    """A ``storage`` section for a fresh bucket on fake-gcs-server."""
    return gcs_settings(fake_gcs_url, fake_gcs_bucket)


def s3_settings(url: str, bucket: str) -> dict[str, Any]:
    """A ``storage`` section for ``bucket`` on the S3 server at ``url`` (credentials inside)."""
    endpoint, key, secret = s3_credentials(url)
    return {
        "backend": "s3",
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": key,
        "secret_access_key": secret,
        "addressing_style": "path",
        "retry": {"attempts": 2, "initial_delay": 0.01, "jitter": 0},
    }


def gcs_settings(url: str, bucket: str) -> dict[str, Any]:
    """A ``storage`` section for ``bucket`` on the GCS emulator at ``url``."""
    return {
        "backend": "gcs",
        "bucket": bucket,
        "endpoint": url,
        "project": "dtpyfw-tests",
        "anonymous": True,
        "credentials_info": fake_service_account(),
        "retry": {"attempts": 2, "initial_delay": 0.01, "jitter": 0},
    }


@pytest.fixture(params=["moto", "s3proxy"])
def any_s3_raw_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``s3_raw_settings`` on moto, then ``s3proxy_raw_settings``: a test runs on both."""
    name = "s3_raw_settings" if request.param == "moto" else "s3proxy_raw_settings"
    settings: dict[str, Any] = request.getfixturevalue(name)
    return settings


@pytest.fixture(params=["gcp-storage-emulator", "fake-gcs-server"])
def any_gcs_raw_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``gcs_raw_settings``, then ``fake_gcs_raw_settings``: a test runs on both emulators."""
    name = (
        "gcs_raw_settings" if request.param == "gcp-storage-emulator" else "fake_gcs_raw_settings"
    )
    settings: dict[str, Any] = request.getfixturevalue(name)
    return settings
