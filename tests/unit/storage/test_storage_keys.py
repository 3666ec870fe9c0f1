"""Key and prefix rules shared by every storage backend."""

from __future__ import annotations

import io

import pytest

from dtpyfw.core.errors import InvalidKey, StorageError
from dtpyfw.storage import validate_key
from dtpyfw.storage._base import iter_chunks, key_matches, resolve_content_type, validate_prefix


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "a/b/c.txt",
        "ünïcode/ключ",
        "with space/and-dash_",
        ".hidden",
        "a/.b",
        "..a",
        "x" * 1024,
    ],
)
def test_valid_keys_pass_unchanged(key: str) -> None:
    """Relative, well-formed keys are returned as given."""
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "must not be empty"),
        ("/abs", "must be relative"),
        ("../x", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("a/..", "'..' segment"),
        ("./a", "'.' segment"),
        ("a/./b", "'.' segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("x" * 1025, "at most 1024 bytes"),
        ("é" * 513, "at most 1024 bytes"),
        ("a\udcffb", "valid UTF-8"),
    ],
)
def test_invalid_keys_name_the_key_and_the_rule(key: str, rule: str) -> None:
    """Each broken rule raises InvalidKey whose message names the key and the rule."""
    with pytest.raises(InvalidKey) as info:
        validate_key(key)
    message = str(info.value)
    assert rule in message
    assert repr(key[:50])[:-1] in message
    assert isinstance(info.value, StorageError)


def test_non_string_key_is_invalid() -> None:
    """A key must be a str."""
    with pytest.raises(InvalidKey, match="must be a str"):
        validate_key(b"a")  # type: ignore[arg-type]


def test_long_keys_are_shortened_in_messages() -> None:
    """The message quotes at most the start of a very long key."""
    with pytest.raises(InvalidKey) as info:
        validate_key("y" * 5000)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "a/b/", "photos/20"])
def test_valid_prefixes(prefix: str) -> None:
    """Prefixes may be empty, end with '/' or stop inside a segment."""
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/a", "../", "a/../", "a//", "a\\", "\x00"])
def test_invalid_prefixes(prefix: str) -> None:
    """Prefixes follow the key rules otherwise."""
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("key", "prefix", "recursive", "expected"),
    [
        ("a/b", "", True, True),
        ("a/b", "", False, False),
        ("a", "", False, True),
        ("a/b", "a/", False, True),
        ("a/b/c", "a/", False, False),
        ("a/b/c", "a/", True, True),
        ("ab", "a", False, True),
        ("a/b", "a", False, False),
        ("b", "a", True, False),
    ],
)
def test_key_matches(key: str, prefix: str, recursive: bool, expected: bool) -> None:
    """Non-recursive listings stop at the first '/' after the prefix."""
    assert key_matches(key, prefix, recursive) is expected


def test_content_type_guess() -> None:
    """The explicit type wins, then the key's extension, then octet-stream."""
    assert resolve_content_type("a.png", "text/plain") == "text/plain"
    assert resolve_content_type("dir.v2/a.png", None) == "image/png"
    assert resolve_content_type("dir.txt/blob", None) == "application/octet-stream"


def test_iter_chunks_slices_bytes_and_reads_files() -> None:
    """Bytes are sliced and file-likes read chunk by chunk."""
    assert list(iter_chunks(b"abcdefg", 3)) == [b"abc", b"def", b"g"]
    assert list(iter_chunks(io.BytesIO(b"abcdefg"), 4)) == [b"abcd", b"efg"]
    assert list(iter_chunks(b"", 4)) == []


def test_iter_chunks_rejects_other_types() -> None:
    """Text streams and other objects are a TypeError."""
    with pytest.raises(TypeError):
        list(iter_chunks(io.StringIO("text"), 4))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        list(iter_chunks(123, 4))  # type: ignore[arg-type]
