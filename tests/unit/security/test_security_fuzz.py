"""Bad input never crashes verification: every failure is a TokenError (a 401)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtpyfw.security import JwtKey, KeySet, TokenError, TokenService

SERVICE = TokenService(
    KeySet([JwtKey.hmac("k1", "k" * 32)]), issuer="fuzz", audience="fuzz", max_token_bytes=2048
)
VALID = SERVICE.issue_access("user", scopes=["a"], claims={"roles": ["r"]})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """HS256 over any JSON, with our secret: what PyJWT's encode would refuse to build."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(b"k" * 32, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _outcome(token: Any) -> str:
    try:
        SERVICE.verify(token)
    except TokenError as exc:
        return type(exc).__name__
    return "valid"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=len(VALID) - 1),
    junk=st.text(max_size=40),
)
def test_truncated_and_spliced_tokens_are_rejected(cut: int, junk: str) -> None:
    """A valid token cut anywhere, with or without junk appended, is rejected as a TokenError."""
    assert _outcome(VALID[:cut]) != "valid"
    assert _outcome(VALID[:cut] + junk) != "valid" or junk == VALID[cut:]


@settings(max_examples=300, deadline=None)
@given(header=json_values, payload=json_values, signature=st.binary(max_size=64))
def test_arbitrary_json_segments_are_rejected(header: Any, payload: Any, signature: bytes) -> None:
    """Any JSON header and payload (wrong types included) under a bad signature is a TokenError."""
    token = ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature)]
    )
    assert _outcome(token) != "valid"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_rejected(token: str) -> None:
    """Random text, bad base64 and oversized strings raise a TokenError, nothing else."""
    assert _outcome(token) != "valid"


@settings(max_examples=200, deadline=None)
@given(
    kid=st.text(max_size=30).filter(lambda k: k != "k1"),
    claims=st.dictionaries(
        st.sampled_from(["sub", "exp", "nbf", "iat", "jti", "iss", "aud", "scope", "fam"]),
        json_values,
    ),
)
def test_unknown_kid_and_wrongly_typed_claims(kid: str, claims: dict[str, Any]) -> None:
    """Signed by our secret but naming another kid, or carrying claims of any type: rejected."""
    base = {
        "iss": "fuzz",
        "aud": "fuzz",
        "sub": "u",
        "exp": 4_000_000_000,
        "iat": 1,
        "nbf": 1,
        "jti": "j",
    }
    assert _outcome(_signed({"alg": "HS256", "kid": kid}, base)) == "InvalidSignature"
    token = _signed({"alg": "HS256", "kid": "k1"}, {**base, **claims})
    if _outcome(token) == "valid":
        verified = SERVICE.verify(token)
        assert isinstance(verified["sub"], str)
        assert isinstance(verified["jti"], str)
        assert verified["iss"] == "fuzz"
        assert verified["aud"] == "fuzz"
