"""PasswordHasher: bcrypt with an HMAC pre-hash, constant-time verify, rehash, async twins."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from unittest import mock

import bcrypt
import pytest

from dtpyfw.core.errors import DtpyfwError
from dtpyfw.security import PasswordError, PasswordHasher, SecuritySettings

ROUNDS = 10  # the enforced minimum keeps these tests fast


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(ROUNDS)


@pytest.fixture(scope="module")
def stored(hasher: PasswordHasher) -> str:
    return hasher.hash("correct horse battery staple")


def test_hash_then_verify(hasher: PasswordHasher, stored: str) -> None:
    """A hash is a 60-character $2b$ string at the configured cost that verifies its password."""
    assert stored.startswith(f"$2b${ROUNDS}$")
    assert len(stored) == 60
    assert hasher.verify("correct horse battery staple", stored)
    assert not hasher.verify("correct horse battery stapler", stored)


def test_same_password_gets_a_fresh_salt(hasher: PasswordHasher, stored: str) -> None:
    """Hashing twice gives two different hashes that both verify."""
    again = hasher.hash("correct horse battery staple")
    assert again != stored
    assert hasher.verify("correct horse battery staple", again)


def test_long_passwords_sharing_72_bytes_do_not_collide(hasher: PasswordHasher) -> None:
    """Beyond bcrypt's 72-byte limit, passwords differing only at the end stay distinct."""
    prefix = "x" * 100
    stored = hasher.hash(prefix + "A")
    assert hasher.verify(prefix + "A", stored)
    assert not hasher.verify(prefix + "B", stored)
    assert not hasher.verify(prefix, stored)
    multibyte = "é" * 60  # 120 bytes in UTF-8
    assert not hasher.verify("é" * 61, hasher.hash(multibyte))


def test_nul_bytes_and_unicode_forms(hasher: PasswordHasher) -> None:
    """A NUL does not cut the password short; composed and decomposed accents are one password."""
    stored = hasher.hash("abc\x00def")
    assert not hasher.verify("abc", stored)
    assert not hasher.verify("abc\x00xyz", stored)
    composed = hasher.hash("caf\u00e9")
    assert hasher.verify("cafe\u0301", composed)


def test_pepper_changes_the_hash_input() -> None:
    """A hash made with one pepper does not verify with another or with none."""
    peppered = PasswordHasher(ROUNDS, pepper="pepper-one")
    stored = peppered.hash("secret-password")
    assert peppered.verify("secret-password", stored)
    assert not PasswordHasher(ROUNDS, pepper="pepper-two").verify("secret-password", stored)
    assert not PasswordHasher(ROUNDS).verify("secret-password", stored)


@pytest.mark.parametrize("bad", ["", None, b"bytes-password", 123, ["list"]])
def test_empty_or_non_string_password_is_a_clear_error(hasher: PasswordHasher, bad: Any) -> None:
    """hash() and verify() reject empty and non-str passwords with PasswordError."""
    with pytest.raises(PasswordError) as caught:
        hasher.hash(bad)
    assert isinstance(caught.value, DtpyfwError)
    assert caught.value.http_status == 400
    with pytest.raises(PasswordError):
        hasher.verify(bad, "$2b$10$" + "a" * 53)


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "not a hash",
        "$2b$10$short",
        "$2b$99$" + "a" * 53,
        "$2b$10$" + "!" * 53,
        "$1$md5crypt$abcdefghijklmnop",
        "$2b$10$" + "é" * 53,
        b"\xff\xfe",
        12345,
    ],
)
def test_malformed_stored_hash_is_false_and_logged(
    hasher: PasswordHasher, malformed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken stored hash never raises: verify says False and warns, without the hash."""
    with caplog.at_level(logging.WARNING, logger="dtpyfw.security"):
        assert hasher.verify("whatever", malformed) is False
    assert any("malformed" in r.getMessage() for r in caplog.records)
    if isinstance(malformed, str) and len(malformed) > 10:
        assert all(malformed not in r.getMessage() for r in caplog.records)


def test_verify_compares_through_bcrypt_checkpw(hasher: PasswordHasher, stored: str) -> None:
    """The comparison is bcrypt.checkpw's constant-time one, never a Python ==."""
    with mock.patch("bcrypt.checkpw", wraps=bcrypt.checkpw) as checkpw:
        assert hasher.verify("correct horse battery staple", stored)
        assert not hasher.verify("wrong", stored)
    assert checkpw.call_count == 2


def test_unknown_user_still_costs_one_bcrypt(hasher: PasswordHasher) -> None:
    """verify(password, None) runs checkpw against a dummy hash and returns False."""
    with mock.patch("bcrypt.checkpw", wraps=bcrypt.checkpw) as checkpw:
        assert hasher.verify("anything", None) is False
    assert checkpw.call_count == 1
    (_digest, dummy), _ = checkpw.call_args
    assert dummy.startswith(f"$2b${ROUNDS}$".encode())


def test_needs_rehash_when_cost_was_raised(hasher: PasswordHasher, stored: str) -> None:
    """A hash at a lower cost (or not a 2b bcrypt hash) needs rehashing; same or higher does not."""
    assert not hasher.needs_rehash(stored)
    stronger = PasswordHasher(11)
    assert stronger.needs_rehash(stored)
    assert not PasswordHasher(ROUNDS).needs_rehash(stronger.hash("pw"))
    assert hasher.needs_rehash("garbage")
    assert hasher.needs_rehash(stored.replace("$2b$", "$2a$", 1))


@pytest.mark.parametrize("rounds", [4, 9, 21])
def test_cost_below_minimum_is_refused(rounds: int) -> None:
    """Costs under 10 (and absurd ones) are refused by the hasher and by the settings."""
    with pytest.raises(ValueError, match="between 10"):
        PasswordHasher(rounds)
    with pytest.raises(ValueError, match="bcrypt_rounds"):
        SecuritySettings(bcrypt_rounds=rounds)


def test_from_settings_uses_cost_and_pepper() -> None:
    """The settings' cost and pepper reach the hasher; the default cost is 12."""
    assert SecuritySettings().bcrypt_rounds == 12
    hasher = PasswordHasher.from_settings(SecuritySettings(bcrypt_rounds=10, pepper="p" * 16))
    stored = hasher.hash("pw")
    assert stored.startswith("$2b$10$")
    assert not PasswordHasher(10).verify("pw", stored)
    assert "p" * 16 not in repr(hasher)


async def test_async_twins_leave_the_event_loop_free(hasher: PasswordHasher) -> None:
    """ahash/averify run bcrypt in a worker thread: a ticker keeps running meanwhile."""
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def spy(*args: Any) -> Any:
        seen.append(threading.get_ident())
        return real(*args)

    real = bcrypt.hashpw
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        with mock.patch("bcrypt.hashpw", side_effect=spy):
            stored = await hasher.ahash("async password")
        assert await hasher.averify("async password", stored)
        assert not await hasher.averify("other password", stored)
    finally:
        task.cancel()
    assert seen
    assert all(ident != loop_thread for ident in seen)
    assert ticks > 1
    with pytest.raises(PasswordError):
        await hasher.ahash("")
