"""Settings for the network storage backends, pointing at the servers the harness launched."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from dtpyfw.testing._launchers import s3_credentials


@functools.cache
def fake_service_account() -> str:
    """A throwaway service-account key: it signs URLs, which the GCS emulator accepts unchecked."""
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
    """A ``storage`` section (plain data) for a fresh bucket on the test S3 server."""
    endpoint, key, secret = s3_credentials(s3_url)
    return {
        "backend": "s3",
        "bucket": s3_bucket,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": key,
        "secret_access_key": secret,
        "addressing_style": "path",
        "retry": {"attempts": 2, "initial_delay": 0.01, "jitter": 0},
    }


@pytest.fixture
def gcs_raw_settings(gcs_url: str, gcs_bucket: str) -> dict[str, Any]:
    """A ``storage`` section (plain data) for a fresh bucket on the GCS emulator."""
    return {
        "backend": "gcs",
        "bucket": gcs_bucket,
        "endpoint": gcs_url,
        "project": "dtpyfw-tests",
        "anonymous": True,
        "credentials_info": fake_service_account(),
        "retry": {"attempts": 2, "initial_delay": 0.01, "jitter": 0},
    }
