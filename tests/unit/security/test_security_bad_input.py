"""Deterministic bad-input sweeps (run without hypothesis): every cut and flip is rejected."""

from __future__ import annotations

import random

import pytest

from dtpyfw.security import JwtKey, KeySet, TokenError, TokenService

SERVICE = TokenService(KeySet([JwtKey.hmac("k1", "k" * 32)]), issuer="i", audience="a")
VALID = SERVICE.issue_access("user", scopes=["a"])


def test_every_truncation_is_rejected() -> None:
    """The token cut at every position is a TokenError."""
    for cut in range(len(VALID)):
        with pytest.raises(TokenError):
            SERVICE.verify(VALID[:cut])


def test_character_flips_never_forge_other_claims() -> None:
    """Flipping single characters (seeded sample) never yields different verified claims."""
    rng = random.Random(7)  # noqa: S311 - a reproducible sample of positions, not a secret
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
    rejected = 0
    for position in rng.sample(range(len(VALID)), 150):
        replacement = rng.choice([c for c in alphabet if c != VALID[position]])
        flipped = VALID[:position] + replacement + VALID[position + 1 :]
        try:
            claims = SERVICE.verify(flipped)
        except TokenError:
            rejected += 1
        else:
            # base64url's last character of a segment may carry unused bits.
            assert claims == SERVICE.verify(VALID)
    assert rejected >= 140
