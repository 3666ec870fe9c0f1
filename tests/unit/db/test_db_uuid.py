"""uuid7(): RFC 9562 version 7 layout, time order and uniqueness."""

from __future__ import annotations

import time
import uuid

from dtpyfw.db import uuid7


def test_uuid7_has_version_7_and_the_rfc_variant() -> None:
    """The version nibble is 7 and the variant is RFC 9562's."""
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_embeds_the_current_unix_milliseconds() -> None:
    """The first 48 bits are the creation time in milliseconds since the epoch."""
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after


def test_uuid7_is_unique_and_increasing_over_10k() -> None:
    """10,000 UUIDs made in a row are distinct and already sorted, also as strings."""
    values = [uuid7() for _ in range(10_000)]
    assert len(set(values)) == len(values)
    assert values == sorted(values)
    assert [str(v) for v in values] == sorted(str(v) for v in values)
