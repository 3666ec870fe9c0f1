"""TokenService: issue/verify claims, every algorithm, pinning, errors, rotation, revocation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dtpyfw.core.errors import DtpyfwError
from dtpyfw.security import (
    InvalidAudience,
    InvalidIssuer,
    InvalidSignature,
    JwtKey,
    KeySet,
    MalformedToken,
    MemoryDenyList,
    SecurityError,
    TokenError,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
    TokenService,
)

SECRET = "s" * 32


def _pem_private(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _pem_public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys(rsa_key: rsa.RSAPrivateKey) -> dict[str, JwtKey]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "HS256": JwtKey.hmac("hs256", SECRET, "HS256"),
        "HS384": JwtKey.hmac("hs384", "t" * 48, "HS384"),
        "HS512": JwtKey.hmac("hs512", "u" * 64, "HS512"),
        "RS256": JwtKey.from_pem("rs256", "RS256", private_pem=_pem_private(rsa_key)),
        "ES256": JwtKey.from_pem("es256", "ES256", private_pem=_pem_private(ec_key)),
        "EdDSA": JwtKey.from_pem("ed", "EdDSA", private_pem=_pem_private(ed_key)),
    }


def _service(*keys: JwtKey, **options: Any) -> TokenService:
    signing = options.pop("signing", None)
    options.setdefault("issuer", "https://issuer.test")
    options.setdefault("audience", "api")
    return TokenService(KeySet(keys, signing), **options)


def _forge(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "https://issuer.test",
        "aud": "api",
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "j-1",
    }
    claims.update(overrides)
    return claims


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"])
def test_every_algorithm_round_trips(keys: dict[str, JwtKey], algorithm: str) -> None:
    """Each supported algorithm signs with its kid and verifies the registered and custom claims."""
    service = _service(keys[algorithm])
    token = service.issue_access("user-1", scopes=["notes:read", "notes:write"], claims={"t": 1})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": algorithm, "kid": keys[algorithm].kid, "typ": "at+jwt"}
    claims = service.verify(token)
    assert claims["sub"] == "user-1"
    assert claims["iss"] == "https://issuer.test"
    assert claims["aud"] == "api"
    assert claims["scope"] == "notes:read notes:write"
    assert claims["t"] == 1
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] == claims["iat"]
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16


def test_each_token_has_a_unique_jti(keys: dict[str, JwtKey]) -> None:
    """Two tokens for the same subject carry different jti values."""
    service = _service(keys["HS256"])
    first, second = (service.verify(service.issue_access("u"))["jti"] for _ in range(2))
    assert first != second


def test_reserved_claims_cannot_be_overridden(keys: dict[str, JwtKey]) -> None:
    """claims= may not set sub, exp, iss, jti and the other claims the service writes."""
    service = _service(keys["HS256"])
    with pytest.raises(ValueError, match="exp"):
        service.issue_access("u", claims={"exp": 9999999999})
    with pytest.raises(ValueError, match="scope"):
        service.issue_access("u", scopes=["a b"])
    with pytest.raises(ValueError, match="subject"):
        service.issue_access("")


def test_expired_and_not_yet_valid(keys: dict[str, JwtKey]) -> None:
    """exp in the past is TokenExpired; nbf in the future is TokenNotYetValid (beyond leeway)."""
    past = _service(keys["HS256"], leeway=0, clock=lambda: time.time() - 3600)
    future = _service(keys["HS256"], leeway=0, clock=lambda: time.time() + 3600)
    service = _service(keys["HS256"], leeway=0)
    with pytest.raises(TokenExpired):
        service.verify(past.issue_access("u"))
    with pytest.raises(TokenNotYetValid):
        service.verify(future.issue_access("u"))


def test_leeway_tolerates_small_skew(keys: dict[str, JwtKey]) -> None:
    """A token that expired 5 s ago passes with a 10 s leeway, not with none."""
    issuer = _service(keys["HS256"], access_ttl=1, clock=lambda: time.time() - 6)
    token = issuer.issue_access("u", ttl=1)
    assert _service(keys["HS256"], leeway=10).verify(token)["sub"] == "u"
    with pytest.raises(TokenExpired):
        _service(keys["HS256"], leeway=0).verify(token)


def test_wrong_audience_and_issuer(keys: dict[str, JwtKey]) -> None:
    """Another aud is InvalidAudience; another iss is InvalidIssuer; missing ones too."""
    service = _service(keys["HS256"])
    other_aud = _service(keys["HS256"], audience="other").issue_access("u")
    other_iss = _service(keys["HS256"], issuer="https://evil.test").issue_access("u")
    with pytest.raises(InvalidAudience):
        service.verify(other_aud)
    with pytest.raises(InvalidIssuer):
        service.verify(other_iss)
    assert service.verify(other_aud, audience="other")["aud"] == "other"
    no_aud = jwt.encode({k: v for k, v in _claims().items() if k != "aud"}, SECRET, "HS256")
    no_iss = jwt.encode({k: v for k, v in _claims().items() if k != "iss"}, SECRET, "HS256")
    with pytest.raises(InvalidAudience):
        service.verify(no_aud)
    with pytest.raises(InvalidIssuer):
        service.verify(no_iss)


def test_several_audiences_are_accepted(keys: dict[str, JwtKey]) -> None:
    """A service with audiences [a, b] writes a and accepts both."""
    service = _service(keys["HS256"], audience=["a", "b"])
    assert service.verify(service.issue_access("u"))["aud"] == "a"
    assert service.verify(service.issue_access("u", audience="b"))["aud"] == "b"


def test_tampered_and_foreign_signatures(keys: dict[str, JwtKey]) -> None:
    """A changed payload or a token signed by another secret under our kid is InvalidSignature."""
    service = _service(keys["HS256"])
    token = service.issue_access("user-1")
    head, _payload, signature = token.split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps(_claims(sub="admin")).encode()).rstrip(
        b"="
    )
    with pytest.raises(InvalidSignature):
        service.verify(f"{head}.{forged_payload.decode()}.{signature}")
    foreign = jwt.encode(_claims(), "x" * 32, "HS256", headers={"kid": "hs256"})
    with pytest.raises(InvalidSignature):
        service.verify(foreign)


def test_alg_none_is_rejected(keys: dict[str, JwtKey]) -> None:
    """An unsigned token (alg none), with or without our kid, never verifies."""
    service = _service(keys["HS256"], keys["RS256"], signing="hs256")
    for kid in ("hs256", "rs256"):
        unsigned = _forge({"alg": "none", "kid": kid, "typ": "JWT"}, _claims(), lambda _: b"")
        with pytest.raises(InvalidSignature, match="not accepted"):
            service.verify(unsigned)
        stripped = unsigned.rsplit(".", 1)[0] + "."
        with pytest.raises(InvalidSignature):
            service.verify(stripped)


def test_hs256_signed_with_the_public_key_is_rejected(
    keys: dict[str, JwtKey], rsa_key: rsa.RSAPrivateKey
) -> None:
    """Algorithm confusion: HMAC over the RSA public PEM under the RSA kid does not verify."""
    service = _service(keys["RS256"])
    public_pem = _pem_public(rsa_key)
    forged = _forge(
        {"alg": "HS256", "kid": "rs256", "typ": "at+jwt"},
        _claims(),
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )
    with pytest.raises(InvalidSignature, match="not accepted"):
        service.verify(forged)


def test_algorithm_is_pinned_per_key(keys: dict[str, JwtKey]) -> None:
    """A token claiming ES256 under an RS256 kid is refused before any signature check."""
    service = _service(keys["RS256"], keys["ES256"], signing="rs256")
    es_token = _service(keys["ES256"]).issue_access("u")
    head = json.loads(base64.urlsafe_b64decode(es_token.split(".")[0] + "=="))
    assert head["kid"] == "es256"
    assert service.verify(es_token)["sub"] == "u"
    swapped = _forge({"alg": "ES256", "kid": "rs256"}, _claims(), lambda _: b"\x00" * 64)
    with pytest.raises(InvalidSignature, match="not accepted"):
        service.verify(swapped)


def test_unknown_kid_and_missing_kid(keys: dict[str, JwtKey]) -> None:
    """An unknown kid is InvalidSignature; no kid is accepted only when one key exists."""
    two = _service(keys["HS256"], keys["HS384"], signing="hs256")
    unknown = jwt.encode(_claims(), SECRET, "HS256", headers={"kid": "nope"})
    with pytest.raises(InvalidSignature, match="unknown key"):
        two.verify(unknown)
    no_kid = jwt.encode(_claims(), SECRET, "HS256")
    with pytest.raises(MalformedToken, match="no kid"):
        two.verify(no_kid)
    assert _service(keys["HS256"]).verify(no_kid)["sub"] == "user-1"
    numeric = _forge(
        {"alg": "HS256", "kid": 7},
        _claims(),
        lambda data: hmac.new(SECRET.encode(), data, hashlib.sha256).digest(),
    )
    with pytest.raises(MalformedToken):
        two.verify(numeric)


def test_rotation_old_tokens_verify_new_ones_use_new_key(keys: dict[str, JwtKey]) -> None:
    """After a rotation the new key signs; tokens of the previous key still verify."""
    before = _service(keys["RS256"])
    old_token = before.issue_access("u")
    after = _service(keys["RS256"], keys["ES256"], signing="es256")
    new_token = after.issue_access("u")
    assert jwt.get_unverified_header(new_token)["kid"] == "es256"
    assert after.verify(old_token)["sub"] == "u"
    assert after.verify(new_token)["sub"] == "u"
    with pytest.raises(InvalidSignature):
        _service(keys["ES256"]).verify(old_token)


def test_wrongly_typed_claims_are_malformed(keys: dict[str, JwtKey]) -> None:
    """exp as text, sub as a number, scope as a list, a missing jti: MalformedToken."""
    service = _service(keys["HS256"])
    cases = [
        _claims(exp="tomorrow"),
        _claims(nbf="now"),
        _claims(iat="now"),
        _claims(sub=42),
        _claims(jti=7),
        _claims(scope=["a", "b"]),
        _claims(fam=3),
        {k: v for k, v in _claims().items() if k != "jti"},
        {k: v for k, v in _claims().items() if k != "exp"},
    ]
    for claims in cases:
        token = jwt.encode(claims, SECRET, "HS256", headers={"kid": "hs256"})
        with pytest.raises(MalformedToken):
            service.verify(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "!!!.b.c",
        base64.urlsafe_b64encode(b"[1,2]").decode() + ".e30.",
        base64.urlsafe_b64encode(b'{"alg": 5}').decode() + ".e30.",
        base64.urlsafe_b64encode(b'{"alg": "HS256", "kid": "hs256"}').decode() + ".!!!.abc",
        base64.urlsafe_b64encode(b'{"alg": "HS256", "kid": "hs256"}').decode() + ".e30.",
        None,
        123,
        b"bytes.are.not",
    ],
)
def test_garbage_is_malformed_or_bad_signature(keys: dict[str, JwtKey], token: Any) -> None:
    """Anything that is not a JWT of ours is a TokenError (401), never a crash."""
    with pytest.raises((MalformedToken, InvalidSignature)):
        _service(keys["HS256"]).verify(token)


def test_huge_token_rejected_before_decoding(
    keys: dict[str, JwtKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above max_token_bytes the token is refused without touching base64 or JSON."""
    service = _service(keys["HS256"], max_token_bytes=1024)
    huge = "a" * 1025

    def boom(*args: Any) -> Any:
        raise AssertionError("decoded a token over the limit")

    monkeypatch.setattr(base64, "urlsafe_b64decode", boom)
    monkeypatch.setattr(jwt, "decode", boom)
    with pytest.raises(MalformedToken, match="longer than 1024"):
        service.verify(huge)
    with pytest.raises(MalformedToken, match="longer than 1024"):
        service.verify(f"{'a' * 600}.{'b' * 600}.c")


def test_token_errors_are_401_dtpyfw_errors() -> None:
    """Every token error is a TokenError, a DtpyfwError with HTTP status 401."""
    for kind in (
        TokenExpired,
        TokenNotYetValid,
        InvalidAudience,
        InvalidIssuer,
        InvalidSignature,
        MalformedToken,
        TokenRevoked,
    ):
        assert issubclass(kind, TokenError)
        assert issubclass(kind, DtpyfwError)
        assert kind("x").http_status == 401
        assert kind("x").oauth_error == "invalid_token"


def test_verify_only_service_cannot_issue(keys: dict[str, JwtKey], rsa_key: Any) -> None:
    """A service with only public keys verifies tokens but issuing raises SecurityError."""
    public_only = JwtKey.from_pem("rs256", "RS256", public_pem=_pem_public(rsa_key))
    verifier = _service(public_only)
    assert verifier.verify(_service(keys["RS256"]).issue_access("u"))["sub"] == "u"
    with pytest.raises(SecurityError, match="no key can sign"):
        verifier.issue_access("u")


def test_refresh_rotates_and_reuse_revokes_the_family(keys: dict[str, JwtKey]) -> None:
    """A refresh spends its token; presenting it again revokes the family and its access tokens."""
    service = _service(keys["HS256"])
    first = service.issue_pair("user-1", scopes=["notes:read"], claims={"roles": ["admin"]})
    assert service.verify(first.access_token)["roles"] == ["admin"]
    second = service.refresh(first.refresh_token)
    claims = service.verify(second.access_token)
    assert claims["scope"] == "notes:read"
    assert claims["roles"] == ["admin"]
    with pytest.raises(TokenRevoked, match="already used"):
        service.refresh(first.refresh_token)  # replayed: the attacker or the victim
    with pytest.raises(TokenRevoked):
        service.refresh(second.refresh_token)  # the whole family is gone
    with pytest.raises(TokenRevoked):
        service.verify(second.access_token)
    with pytest.raises(TokenRevoked):
        service.verify(first.access_token)


def test_refresh_and_access_tokens_are_not_interchangeable(keys: dict[str, JwtKey]) -> None:
    """A refresh token is refused as an access token, and an access token cannot refresh."""
    service = _service(keys["HS256"])
    pair = service.issue_pair("u")
    with pytest.raises(MalformedToken, match="refresh token"):
        service.verify(pair.refresh_token)
    with pytest.raises(MalformedToken, match="not a refresh token"):
        service.refresh(pair.access_token)
    standalone = service.issue_access("u")
    with pytest.raises(MalformedToken):
        service.refresh(standalone)


def test_token_pair_shape(keys: dict[str, JwtKey]) -> None:
    """The pair follows the OAuth 2 token response shape."""
    service = _service(keys["HS256"], access_ttl=60, refresh_ttl=3600)
    pair = service.issue_pair("u")
    assert pair.token_type == "Bearer"
    assert pair.expires_in == 60
    assert pair.refresh_expires_in == 3600
    refresh_claims = jwt.decode(
        pair.refresh_token, SECRET, ["HS256"], audience="api", issuer="https://issuer.test"
    )
    assert refresh_claims["exp"] - refresh_claims["iat"] == 3600
    assert jwt.get_unverified_header(pair.refresh_token)["typ"] == "refresh+jwt"


def test_revoke_access_token_by_jti(keys: dict[str, JwtKey]) -> None:
    """A revoked access token fails verification; other tokens of the subject do not."""
    deny_list = MemoryDenyList()
    service = _service(keys["HS256"], deny_list=deny_list)
    revoked, kept = service.issue_access("u"), service.issue_access("u")
    service.revoke(revoked)
    with pytest.raises(TokenRevoked):
        service.verify(revoked)
    assert service.verify(kept)["sub"] == "u"
    assert len(deny_list) == 1


def test_logout_revokes_the_family(keys: dict[str, JwtKey]) -> None:
    """Revoking a refresh token ends its family: no refresh, no access with its tokens."""
    service = _service(keys["HS256"])
    pair = service.issue_pair("u")
    service.revoke(pair.refresh_token)
    with pytest.raises(TokenRevoked):
        service.refresh(pair.refresh_token)
    with pytest.raises(TokenRevoked):
        service.verify(pair.access_token)


def test_revoking_an_expired_token_is_a_no_op(keys: dict[str, JwtKey]) -> None:
    """An expired token is already dead: revoke() accepts it and stores nothing."""
    deny_list = MemoryDenyList()
    old = _service(keys["HS256"], clock=lambda: time.time() - 7200).issue_access("u")
    _service(keys["HS256"], deny_list=deny_list).revoke(old)
    assert len(deny_list) == 0


def test_memory_deny_list_entries_expire() -> None:
    """Denials last their ttl and then disappear, keeping memory bounded."""
    now = [1000.0]
    deny_list = MemoryDenyList(clock=lambda: now[0])
    deny_list.revoke("a", 10)
    deny_list.revoke_family("f", 20)
    assert deny_list.is_revoked("a")
    assert deny_list.is_revoked("x", "f")
    now[0] += 15
    assert not deny_list.is_revoked("a")
    assert deny_list.is_revoked("x", "f")
    now[0] += 10
    assert not deny_list.is_revoked("x", "f")
    assert len(deny_list) == 0


async def test_async_twins(keys: dict[str, JwtKey]) -> None:
    """aissue_pair / averify / arefresh / arevoke behave like the sync methods."""
    service = _service(keys["ES256"])
    pair = await service.aissue_pair("u", scopes=["s"])
    assert (await service.averify(pair.access_token))["scope"] == "s"
    rotated = await service.arefresh(pair.refresh_token)
    with pytest.raises(TokenRevoked):
        await service.arefresh(pair.refresh_token)
    with pytest.raises(TokenRevoked):
        await service.averify(rotated.access_token)
    other = await service.aissue_pair("v")
    await service.arevoke(other.access_token)
    with pytest.raises(TokenRevoked):
        await service.averify(other.access_token)


def test_jwks_document_publishes_only_public_keys(keys: dict[str, JwtKey]) -> None:
    """The JWKS lists asymmetric public keys with kid/alg/use; HMAC secrets never appear."""
    service = _service(*keys.values(), signing="rs256")
    document = service.jwks()
    assert sorted(k["kid"] for k in document["keys"]) == ["ed", "es256", "rs256"]
    for jwk in document["keys"]:
        assert jwk["use"] == "sig"
        assert "d" not in jwk
        assert JwtKey.from_jwk(jwk).algorithm == jwk["alg"]
    assert SECRET not in json.dumps(document)
    rs = next(k for k in document["keys"] if k["kid"] == "rs256")
    token = _service(keys["RS256"]).issue_access("u")
    verifier = _service(JwtKey.from_jwk(rs))
    assert verifier.verify(token)["sub"] == "u"


def test_key_material_must_fit_the_algorithm(rsa_key: Any) -> None:
    """Short HMAC secrets, RSA under 2048 bits, wrong curves and oct JWKs are refused."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtKey.hmac("k", "short", "HS256")
    with pytest.raises(ValueError, match="at least 64 bytes"):
        JwtKey.hmac("k", "x" * 63, "HS512")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    with pytest.raises(ValueError, match="2048"):
        JwtKey.from_pem("k", "RS256", private_pem=_pem_private(small))
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        JwtKey.from_pem("k", "ES256", private_pem=_pem_private(p384))
    with pytest.raises(ValueError, match="RSA"):
        JwtKey.from_pem("k", "RS256", private_pem=_pem_private(p384))
    with pytest.raises(ValueError, match="Ed25519"):
        JwtKey.from_pem("k", "EdDSA", private_pem=_pem_private(rsa_key))
    with pytest.raises(ValueError, match="PEM"):
        JwtKey.from_pem("k", "RS256", private_pem=b"not a pem")
    with pytest.raises(ValueError, match="symmetric"):
        JwtKey.from_jwk({"kty": "oct", "kid": "k", "k": "c2VjcmV0"})
    private_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    with pytest.raises(ValueError, match="private"):
        JwtKey.from_jwk({**private_jwk, "kid": "k"})
