"""Three worker processes on a private redis-server: sharing, a SIGKILL, scheduled ticks.

Each test runs on the ``redis`` strategy and on ``kafka`` (records on the
session's Kafka 4 broker; the kafka strategy creates its topics). Every
run is counted in Redis by the task itself (``worker_reliability_tasks``),
so the counts are what really executed, whatever the workers report.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from dtpyfw.config import load_settings
from dtpyfw.container import ServiceContainer
from dtpyfw.testing import BackendUnavailable, ServiceHandle, find_redis, wait_until
from dtpyfw.worker import TaskQueue, TaskState

HERE = Path(__file__).resolve().parent
TASKS = 3000
CONCURRENCY = 4


@pytest.fixture(scope="module")
def private_redis() -> Iterator[ServiceHandle]:
    """A redis-server of our own: killing workers must not disturb other suites' data."""
    try:
        handle = find_redis(launch="always")
    except BackendUnavailable as exc:
        if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
            pytest.fail(f"{exc}\n(CI is set: a missing backend fails the run)", pytrace=False)
        pytest.skip(str(exc))
    with handle:
        yield handle


@pytest.fixture
def client(private_redis: ServiceHandle) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(private_redis.url) as connection:
        connection.flushdb()
        yield connection


@pytest.fixture(params=["redis", "kafka"])
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config(
    tmp_path: Path, private_redis: ServiceHandle, strategy: str, request: pytest.FixtureRequest
) -> Callable[..., Path]:
    kafka = ""
    if strategy == "kafka":
        # The session's Kafka 4 broker; the namespace below keeps this test's topics apart.
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        section = {
            "bootstrap_servers": bootstrap.split(","),
            "consumer": {"session_timeout": 6, "heartbeat_interval": 1, "commit_interval": 0.1},
        }
        kafka = f"kafka: {json.dumps(section)}\n"

    def write(extra: str = "") -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(
            f"redis:\n  url: {private_redis.url}\n"
            f"{kafka}"
            "worker:\n"
            f"  strategy: {strategy}\n"
            f"  namespace: t{uuid.uuid4().hex[:10]}\n"
            "  poll_interval: 0.1\n"
            "  heartbeat_interval: 0.2\n"
            "  visibility_timeout: 1.0\n"
            "  shutdown_timeout: 5\n"
            f"{extra}"
            "log:\n  level: WARNING\n"
        )
        return path

    return write


@pytest.fixture
def workers() -> Iterator[Callable[..., list[subprocess.Popen[str]]]]:
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, count: int, *, ready: bool = True) -> list[subprocess.Popen[str]]:
        """Start ``count`` workers; with ``ready``, return once they work (and share a group)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        batch = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dtpyfw.cli",
                    "worker",
                    "run",
                    "--config",
                    str(path),
                    "--tasks",
                    "worker_reliability_tasks",
                    "--concurrency",
                    str(CONCURRENCY),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(count)
        ]
        started.extend(batch)
        if not ready:
            return batch
        for process in batch:
            assert process.stdout is not None
            seen = []  # log lines (kafka-python's warnings, say) may come first
            while not (line := process.stdout.readline()).startswith("worker "):
                assert line, "".join(seen) + (process.stderr.read() if process.stderr else "")
                seen.append(line)
        await_group(path, sum(process.poll() is None for process in started))
        return batch

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def await_group(path: Path, members: int) -> None:
    """On the kafka strategy, wait until the workers' group is stable with ``members`` members.

    A real broker hands every partition to the first member that joins; tasks
    enqueued before the others are in would all go to it.
    """
    settings = load_settings(path, env={}, env_file=None)
    assert settings.worker is not None
    if settings.worker.strategy != "kafka":
        return
    assert settings.kafka is not None
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError
    from kafka.protocol.admin import DescribeGroupsRequest

    group = f"{settings.worker.namespace}.workers"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:

        def stable() -> bool:
            # DescribeGroups v2 by hand: kafka-python 2.3's describe_consumer_groups
            # asks v3 and fails to decode Kafka 4's authorized operations.
            try:
                (coordinator,) = admin._find_coordinator_ids([group]).values()
                future = admin._send_request_to_node(
                    coordinator, DescribeGroupsRequest[2](groups=[group])
                )
                admin._wait_for_futures([future])
            except KafkaError as exc:
                if exc.retriable:  # the first group of a fresh broker: no coordinator yet
                    return False
                raise
            (error_code, _group, state, _type, _protocol, found) = future.value.groups[0]
            return bool(error_code == 0 and state == "Stable" and len(found) == members)

        wait_until(stable, timeout=60, what=f"{members} members in group {group}")
    finally:
        admin.close()


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        _out, err = process.communicate(timeout=20)
        assert process.returncode in (0, -signal.SIGKILL), err


def queue_for(path: Path) -> TaskQueue:
    settings = load_settings(path, env={}, env_file=None)
    assert settings.worker is not None
    broker = ServiceContainer.from_settings(settings).worker.broker()
    return TaskQueue(broker, settings.worker)


def succeeded(queue: TaskQueue) -> int:
    return sum(row.succeeded for row in queue.stats())


def runs(client: redis.Redis) -> dict[int, int]:
    return {int(k): int(v) for k, v in client.hgetall("t:runs").items()}


def ran_by(client: redis.Redis, pid: int) -> list[int]:
    return [int(n) for n in client.lrange(f"t:ran:{pid}", 0, -1)]


def test_three_workers_share_the_tasks_and_run_each_once(
    config: Callable[..., Path],
    workers: Callable[..., list[subprocess.Popen[str]]],
    client: redis.Redis,
) -> None:
    """3,000 tasks over 3 processes: each runs exactly once, and every process takes a share."""
    path = config()
    queue = queue_for(path)
    processes = workers(path, 3)
    queue.enqueue_many("rel.count", [[number, 0.0] for number in range(TASKS)])
    wait_until(lambda: succeeded(queue) == TASKS, timeout=60)
    stop(processes)
    assert runs(client) == dict.fromkeys(range(TASKS), 1)
    shares = [len(ran_by(client, process.pid)) for process in processes]
    assert sum(shares) == TASKS
    assert min(shares) >= TASKS // 10, shares
    (row,) = queue.stats()
    assert (row.redelivered, row.failed, row.running, row.queued) == (0, 0, 0, 0)
    queue.close()


def test_a_killed_worker_loses_nothing(
    config: Callable[..., Path],
    workers: Callable[..., list[subprocess.Popen[str]]],
    client: redis.Redis,
) -> None:
    """SIGKILL one of 3 workers mid-run: every task still completes; only its runs repeat."""
    path = config()
    queue = queue_for(path)
    processes = workers(path, 3)
    queue.enqueue_many("rel.count", [[number, 0.004] for number in range(TASKS)])
    victim = processes[0]
    wait_until(lambda: len(ran_by(client, victim.pid)) >= 100, timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    wait_until(lambda: succeeded(queue) == TASKS, timeout=60)
    stop(processes[1:])

    counts = runs(client)
    assert set(counts) == set(range(TASKS))  # nothing lost
    twice = {number for number, times in counts.items() if times > 1}
    assert twice <= set(ran_by(client, victim.pid))  # only the dead worker's runs repeat
    assert len(twice) <= CONCURRENCY  # at most what it was running when it died
    assert max(counts.values()) <= 2
    (row,) = queue.stats()
    assert row.redelivered >= len(twice)
    assert (row.succeeded, row.running, row.queued) == (TASKS, 0, 0)
    queue.close()


def test_three_workers_fire_each_scheduled_tick_once(
    config: Callable[..., Path],
    workers: Callable[..., list[subprocess.Popen[str]]],
    client: redis.Redis,
) -> None:
    """A 0.3 s schedule on 3 processes: every tick runs once, none is skipped."""
    schedule = "{name: tick, task: rel.tick, every: 0.3, catch_up: all}"  # late is not missed
    path = config(f"  schedules:\n    - {schedule}\n")
    queue = queue_for(path)
    processes = workers(path, 3)

    def settled() -> bool:
        # Every tick fired so far has run. On Kafka, ticks in different partitions may
        # run out of order, so a snapshot taken with one still waiting would show a gap.
        rows = queue.stats()
        return client.hlen("t:ticks") >= 6 and not any(r.queued or r.running for r in rows)

    wait_until(settled, timeout=30)
    ticks = {
        datetime.fromisoformat(k.decode()): int(v) for k, v in client.hgetall("t:ticks").items()
    }
    stop(processes)
    queue.close()
    assert set(ticks.values()) == {1}
    ordered = sorted(ticks)
    gaps = {later - earlier for earlier, later in itertools.pairwise(ordered)}
    assert gaps == {timedelta(seconds=0.3)}


def test_a_task_that_kills_its_worker_each_time_ends_in_the_dead_letters(
    config: Callable[..., Path],
    workers: Callable[..., list[subprocess.Popen[str]]],
    client: redis.Redis,
) -> None:
    """Each run SIGKILLs its worker; after max_deliveries lapsed leases the task is dead.

    The review's repro: such a task went through worker after worker and stayed
    'running' for ever. Replacing each dead worker, as an orchestrator does,
    must end with the task in the DLQ and a worker that lives on.
    """
    max_deliveries = 3
    path = config(f"  max_deliveries: {max_deliveries}\n")
    queue = queue_for(path)
    handle = queue.enqueue("rel.poison", [])
    processes: list[subprocess.Popen[str]] = []
    while handle.status() is not TaskState.DEAD:
        assert len(processes) <= max_deliveries + 1, "the poison task never ended"
        # Not waiting for it to be ready: it may take the task and die first.
        (process,) = workers(path, 1, ready=False)
        processes.append(process)
        wait_until(
            lambda p=process: p.poll() is not None or handle.status() is TaskState.DEAD,
            timeout=30,
        )
    survivor = processes[-1]
    assert survivor.poll() is None, "the worker that dead-lettered it died too"
    assert [p.returncode for p in processes[:-1]] == [-signal.SIGKILL] * max_deliveries
    assert int(client.get("t:poison:runs") or 0) == max_deliveries
    info = handle.info()
    assert info.error is not None
    assert info.error.startswith(f"LeaseExpired: the lease expired {max_deliveries} times")
    (row,) = queue.stats()
    assert (row.dead, row.running, row.queued) == (1, 0, 0)
    stop([survivor])
    queue.close()
