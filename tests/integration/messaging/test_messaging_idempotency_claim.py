"""skip_processed as an atomic claim: two copies of one message never both run its handler.

On real Redis (one ``SET NX GET`` per claim) and on the in-memory store, with
two threads delivering the same message at once, as a reclaim or a rebalance
does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    Message,
    MessageBus,
    RedisIdempotencyStore,
)
from dtpyfw.messaging._delivery import Dispatcher
from dtpyfw.messaging._memory import MemoryTransport
from dtpyfw.testing import wait_until

NO_RETRY = RetryPolicy(attempts=1, initial_delay=0, jitter=0)


@pytest.fixture(params=["redis", "memory"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of stores sharing one backend (two processes' stores, on Redis)."""
    if request.param == "memory":
        shared = MemoryIdempotencyStore(lease=0.5)
        yield lambda: shared
        return
    url = request.getfixturevalue("redis_url")
    clients: list[redis.Redis] = []

    def make() -> RedisIdempotencyStore:
        client = redis.Redis.from_url(url)
        clients.append(client)
        return RedisIdempotencyStore(client, lease=0.5, prefix="claims")

    yield make
    for client in clients:
        client.close()


def test_claim_states(make_store: Any) -> None:
    """claimed, then running for the others, then done once marked; release frees it."""
    mine, theirs = make_store(), make_store()
    assert mine.claim("g:1") == "claimed"
    assert theirs.claim("g:1") == "running"
    assert mine.processed("g:1") is False  # a claim is not a processed mark
    mine.release("g:1")
    assert theirs.claim("g:1") == "claimed"
    theirs.mark("g:1")
    assert mine.claim("g:1") == "done"
    assert mine.processed("g:1") is True


def test_a_lapsed_claim_can_be_taken(make_store: Any) -> None:
    """A holder that died never releases: its claim lapses after ``lease``."""
    dead, alive = make_store(), make_store()
    assert dead.claim("g:2") == "claimed"
    wait_until(lambda: alive.claim("g:2") == "claimed", timeout=5, what="the lease to lapse")


def test_release_never_frees_someone_elses_claim(redis_url: str) -> None:
    """After our lease lapsed and another took the key, our release leaves theirs alone.

    (Redis only: the claim carries its holder's token. The in-memory store
    serves one process, where one shared store cannot tell its callers apart.)
    """
    with redis.Redis.from_url(redis_url) as one, redis.Redis.from_url(redis_url) as two:
        _release_leaves_theirs(
            RedisIdempotencyStore(one, lease=0.5, prefix="claims"),
            RedisIdempotencyStore(two, lease=0.5, prefix="claims"),
        )


def _release_leaves_theirs(slow: IdempotencyStore, fast: IdempotencyStore) -> None:
    assert slow.claim("g:3") == "claimed"
    wait_until(lambda: fast.claim("g:3") == "claimed", timeout=5, what="the lease to lapse")
    slow.release("g:3")
    assert slow.claim("g:3") == "running"


def _dispatch_twice(
    store_a: IdempotencyStore, store_b: IdempotencyStore, handler: Any
) -> list[Any]:
    bus = MessageBus(MemoryTransport())
    bus.subscribe("job", handler, group="g")
    message = Message.new("job", {"n": 1}, source="/test")
    outcomes: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda s=store: outcomes.append(
                Dispatcher(NO_RETRY, idempotency=s, skip_processed=True).run(
                    bus.consumer, message, "g"
                )
            )
        )
        for store in (store_a, store_b)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_two_copies_at_once_run_the_handler_once(make_store: Any) -> None:
    """The second copy waits for the first one's outcome and is then skipped."""
    runs: list[int] = []
    inside = threading.Event()
    proceed = threading.Event()

    def handler(message: Message) -> None:
        runs.append(1)
        inside.set()
        proceed.wait(10)

    store_a, store_b = make_store(), make_store()
    releaser = threading.Thread(target=lambda: (inside.wait(10), proceed.set()))
    releaser.start()
    outcomes = _dispatch_twice(store_a, store_b, handler)
    releaser.join()
    assert outcomes == [None, None]
    assert runs == [1]


def test_when_the_first_copy_fails_the_waiting_one_runs(make_store: Any) -> None:
    """A failed attempt releases its claim: the other copy claims it and succeeds."""
    attempts: list[str] = []
    lock = threading.Lock()

    def handler(message: Message) -> None:
        with lock:
            attempts.append("run")
            first = len(attempts) == 1
        if first:
            raise RuntimeError("first copy fails")

    outcomes = _dispatch_twice(make_store(), make_store(), handler)
    assert attempts == ["run", "run"]
    failures = [o for o in outcomes if o is not None]
    assert len(failures) == 1
    assert str(failures[0].error) == "first copy fails"


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_the_async_twin_runs_two_concurrent_copies_once(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """arun claims the same way: two copies awaited together, one handler run."""
    import asyncio

    import redis.asyncio

    from dtpyfw.messaging import AsyncMessageBus

    clients: list[Any] = []
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        clients = [redis.asyncio.Redis.from_url(url) for _ in range(2)]
        stores: list[IdempotencyStore] = [
            RedisIdempotencyStore(None, client, lease=0.5, prefix="claims") for client in clients
        ]
    else:
        shared = MemoryIdempotencyStore(lease=0.5)
        stores = [shared, shared]
    runs: list[int] = []

    async def handler(message: Message) -> None:
        runs.append(1)
        await asyncio.sleep(0.05)  # the other copy arrives while this one runs

    bus = AsyncMessageBus(MemoryTransport())
    bus.subscribe("job", handler, group="g")
    message = Message.new("job", {"n": 2}, source="/test")
    dispatchers = [Dispatcher(NO_RETRY, idempotency=s, skip_processed=True) for s in stores]
    try:
        outcomes = await asyncio.gather(*(d.arun(bus.consumer, message, "g") for d in dispatchers))
    finally:
        for client in clients:
            await client.aclose()
    assert outcomes == [None, None]
    assert runs == [1]
