"""Cache keys and value encoding, without a server."""

from __future__ import annotations

import datetime
import enum
import uuid
import zlib

import pytest
from pydantic import BaseModel

from dtpyfw.core.errors import CacheError
from dtpyfw.redis import Cache, CacheSettings, cached


class Query(BaseModel):
    """A model argument."""

    text: str
    limit: int = 10


class Color(enum.Enum):
    """An enum argument."""

    RED = "red"


@pytest.fixture
def cache() -> Cache:
    """A cache with no client: enough for keys and encoding."""
    return Cache(namespace="svc", version="7")


def test_positional_keyword_and_default_calls_share_a_key(cache: Cache) -> None:
    """Arguments are bound to the signature with defaults applied before hashing."""

    @cache.cached()
    def search(term: str, page: int = 1, *, exact: bool = False) -> list[str]:
        return []

    key = search.key("x")
    assert key == search.key("x", 1) == search.key(term="x", page=1, exact=False)
    assert key != search.key("x", 2)
    assert key.startswith(f"svc:7:{__name__}.")


def test_models_enums_dates_and_sets_key_by_value(cache: Cache) -> None:
    """Equal values give equal keys whatever their identity or set order."""

    @cache.cached()
    def find(q: Query, c: Color, when: datetime.date, ids: set[uuid.UUID]) -> int:
        return 0

    one, two = uuid.uuid4(), uuid.uuid4()
    day = datetime.date(2024, 5, 1)
    assert find.key(Query(text="a"), Color.RED, day, {one, two}) == find.key(
        Query(text="a", limit=10), Color.RED, day, {two, one}
    )
    assert find.key(Query(text="a"), Color.RED, day, {one}) != find.key(
        Query(text="b"), Color.RED, day, {one}
    )


def test_self_and_ignored_arguments_are_left_out(cache: Cache) -> None:
    """Methods key without self; ignore= drops arguments such as sessions."""

    class Repo:
        @cache.cached(ignore=("session",))
        def get(self, item: int, session: object) -> int:
            return item

    assert Repo.get.key(Repo(), 1, object()) == Repo.get.key(Repo(), 1, object())


def test_unkeyable_arguments_say_how_to_fix(cache: Cache) -> None:
    """An argument without a stable form is a CacheError naming key= and ignore=."""

    @cache.cached()
    def f(thing: object) -> int:
        return 0

    with pytest.raises(CacheError, match=r"key=.*ignore="):
        f.key(object())


def test_values_round_trip_and_compress(cache: Cache) -> None:
    """Values encode as typed JSON, zlib above the threshold, and decode back."""

    @cache.cached()
    def query() -> list[Query]:
        return []

    small = query._encode(cache, [Query(text="a")])
    assert small[:1] == b"\x00"
    assert query._decode(small) == (True, [Query(text="a")])
    large_value = [Query(text="x" * 50)] * 100
    large = query._encode(cache, large_value)
    assert large[:1] == b"\x01"
    assert query._decode(large) == (True, large_value)
    assert zlib.decompress(large[1:]).startswith(b"[")
    assert query._decode(b"\x00[{bad") == (False, None)
    assert query._decode(b"\x09???") == (False, None)


def test_settings_configure_the_cache() -> None:
    """Cache.from_settings takes the redis.cache section."""
    settings = CacheSettings(namespace="n", version="3", default_ttl=9, on_error="raise")
    cache = Cache.from_settings(settings)
    assert (cache.namespace, cache.version, cache.default_ttl, cache.on_error) == (
        "n",
        "3",
        9,
        "raise",
    )


def test_cached_needs_a_cache_that_is_a_cache() -> None:
    """A provider returning something else is a clear CacheError at the first call."""

    @cached(cache=lambda: "nope")  # type: ignore[arg-type, return-value]
    def f() -> int:
        return 1

    with pytest.raises(CacheError, match="not a Cache"):
        f()


def test_a_cache_without_a_client_says_so() -> None:
    """Calling through a cache built without clients names the missing client."""
    cache = Cache()
    with pytest.raises(CacheError, match="no sync Redis client"):
        cache.cached()(lambda: 1)()
