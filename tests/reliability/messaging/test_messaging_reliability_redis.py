"""Redis streams under crashes: a consumer killed mid-batch, a server restarted mid-publish."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from messaging_reliability_helpers import ConsumerProcess, wait_until

from dtpyfw.core.errors import MessagingError
from dtpyfw.messaging import MessagingContainer, MessagingSettings, decode_message
from dtpyfw.redis import RedisSettings
from dtpyfw.testing import ServiceHandle, find_redis
from dtpyfw.testing._backends import _find_or_skip

MESSAGES = 10_000
MAX_IN_FLIGHT = 200


@pytest.fixture
def client(private_redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test database."""
    with redis.Redis.from_url(private_redis_url) as client:
        yield client


def test_killed_consumer_loses_nothing_and_duplicates_stay_bounded(
    private_redis_url: str,
    client: redis.Redis,
    consumers: Callable[[dict[str, Any]], ConsumerProcess],
) -> None:
    """10,000 commands; the consumer is SIGKILLed mid-batch and restarted; all are handled."""
    redis_url = private_redis_url
    prefix = f"rel{uuid.uuid4().hex[:8]}."
    messaging = {
        "transport": "redis",
        "channel_prefix": prefix,
        "max_in_flight": MAX_IN_FLIGHT,
        "batch_size": 100,
        "poll_timeout": 0.2,
        "redis": {"claim_idle": 0.5, "claim_interval": 0.2},
    }
    config = {
        "record_url": redis_url,
        "key": "handled",
        "type": "job.run",
        "group": "workers",
        "messaging": messaging,
        "redis": {"url": redis_url},
    }
    container = MessagingContainer(
        settings=MessagingSettings.model_validate(messaging),
        redis_settings=RedisSettings.model_validate({"url": redis_url}),
    )
    bus = container.bus()
    try:
        for n in range(MESSAGES):
            bus.send("job.run", {"n": n})
    finally:
        container.shutdown_resources()
    first = consumers(config)
    first.wait_ready()
    wait_until(lambda: client.hlen("handled") >= MESSAGES // 3)
    first.kill()
    assert client.hlen("handled") < MESSAGES, "the consumer finished before it was killed"
    second = consumers(config)
    second.wait_ready()
    wait_until(lambda: client.hlen("handled") == MESSAGES, timeout=120)
    assert second.stop() == 0, second.output()
    counts = {int(n): int(c) for n, c in client.hgetall("handled").items()}
    assert sorted(counts) == list(range(MESSAGES))
    duplicates = sum(counts.values()) - MESSAGES
    # At most what was fetched and not acknowledged when the process died.
    assert duplicates <= 2 * MAX_IN_FLIGHT, duplicates
    assert client.xpending(f"{prefix}job.run.commands", "workers")["pending"] == 0


class RestartableRedis:
    """A private redis-server with an fsync-always AOF that the test kills and restarts."""

    def __init__(self, handle: ServiceHandle) -> None:
        self.handle = handle
        self.url = handle.url
        with redis.Redis.from_url(self.url) as admin:
            self.port = int(admin.config_get("port")["port"])
            self.directory = Path(admin.config_get("dir")["dir"])
            admin.config_set("appendfsync", "always")
            admin.config_set("appendonly", "yes")
            wait_until(lambda: _aof_ready(admin), timeout=30)
            self.pid = int(admin.info("server")["process_id"])
        self.restarted: subprocess.Popen[bytes] | None = None

    def crash_and_restart(self) -> None:
        """SIGKILL the server, then start a new one on the same port and data directory."""
        os.kill(self.pid, signal.SIGKILL)
        executable = shutil.which("redis-server")
        assert executable is not None
        self.restarted = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def close(self) -> None:
        """Stop the restarted server, then let the handle clean up its directory."""
        if self.restarted is not None:
            self.restarted.terminate()
            self.restarted.wait(timeout=30)
        self.handle.stop()


def _aof_ready(admin: redis.Redis) -> bool:
    info = admin.info("persistence")
    return bool(info["aof_enabled"]) and not info["aof_rewrite_in_progress"]


@pytest.fixture
def private_redis() -> Iterator[RestartableRedis]:
    """A redis-server of this test alone (never the shared one), persistence on."""
    server = RestartableRedis(_find_or_skip(lambda: find_redis(launch="always")))
    try:
        yield server
    finally:
        server.close()


def test_redis_restart_during_publishing_loses_nothing_acknowledged(
    private_redis: RestartableRedis,
) -> None:
    """Publishers retry through a Redis crash; every publish that returned is stored."""
    settings = MessagingSettings.model_validate(
        {
            "transport": "redis",
            "publish_retry": {"attempts": 40, "initial_delay": 0.05, "max_delay": 0.5},
        }
    )
    container = MessagingContainer(
        settings=settings,
        redis_settings=RedisSettings.model_validate(
            {"url": private_redis.url, "retries": 1, "connect_timeout": 0.5, "socket_timeout": 2}
        ),
    )
    bus = container.bus()
    acknowledged: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set() and n < 5000:
            try:
                bus.send("order.place", {"n": n})
            except MessagingError as exc:
                failed.append(str(exc))
            else:
                acknowledged.append(n)
            n += 1

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        wait_until(lambda: len(acknowledged) >= 300)
        private_redis.crash_and_restart()
        crashed_at = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= crashed_at + 300, timeout=60)
    finally:
        stop.set()
        publisher.join(60)
        container.shutdown_resources()
    assert failed == []
    with redis.Redis.from_url(private_redis.url) as check:
        entries = check.xrange("order.place.commands")
    stored = {decode_message(fields[b"m"]).data["n"] for _id, fields in entries}
    assert set(acknowledged) <= stored
    assert private_redis.restarted is not None
    assert private_redis.restarted.poll() is None
