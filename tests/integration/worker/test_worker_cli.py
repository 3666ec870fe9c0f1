"""`dtpyfw worker`: a worker process (SIGTERM, health, injection) and the operations commands."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dtpyfw.cli import main
from dtpyfw.config import load_settings
from dtpyfw.container import ServiceContainer
from dtpyfw.testing import wait_until
from dtpyfw.worker import TaskQueue, TaskState

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def redis_test_db() -> int:
    """A database of its own: other suites flush 15 while these tests run."""
    return 13


@pytest.fixture
def strategy() -> str:
    """The redis strategy, unless a test parametrizes ``strategy``."""
    return "redis"


@pytest.fixture
def config(
    tmp_path: Path, redis_url: str, strategy: str, request: pytest.FixtureRequest
) -> Callable[..., Path]:
    kafka = ""
    if strategy == "kafka":
        section = request.getfixturevalue("kafka_test_settings")
        kafka = f"kafka: {json.dumps(section)}\n"

    def write(shutdown_timeout: float = 10.0) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(
            f"redis:\n  url: {redis_url}\n"
            f"{kafka}"
            "worker:\n"
            f"  strategy: {strategy}\n"
            f"  namespace: c{uuid.uuid4().hex[:10]}\n"
            "  poll_interval: 0.1\n"
            "  heartbeat_interval: 0.2\n"
            f"  shutdown_timeout: {shutdown_timeout}\n"
            "  retry: {attempts: 1}\n"
            "log:\n  level: WARNING\n"
        )
        return path

    return write


@pytest.fixture
def queue_for(redis_url: str) -> Iterator[Callable[[Path], TaskQueue]]:
    made: list[TaskQueue] = []

    def make(path: Path) -> TaskQueue:
        settings = load_settings(path, env={}, env_file=None)
        assert settings.worker is not None
        broker = ServiceContainer.from_settings(settings).worker.broker()
        queue = TaskQueue(broker, settings.worker)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def run(*args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        process = subprocess.Popen(
            [sys.executable, "-m", "dtpyfw.cli", "worker", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(process)
        assert process.stdout is not None
        seen = []  # log lines (kafka-python's warnings, say) may come first
        while not (line := process.stdout.readline()).startswith("worker "):
            assert line, "".join(seen) + (process.stderr.read() if process.stderr else "")
            seen.append(line)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_sigterm_lets_the_running_task_finish_and_health_tells(
    config: Callable[..., Path],
    queue_for: Callable[[Path], TaskQueue],
    spawn: Callable[..., subprocess.Popen[str]],
    redis_url: str,
) -> None:
    """The worker injects the container's Redis client, serves health, drains on SIGTERM."""
    path = config()
    queue = queue_for(path)
    port = free_port()
    process = spawn(
        "--config", str(path), "--tasks", "worker_cli_tasks", "--health-port", str(port)
    )
    assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
    status, body = get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200
    assert body["ok"] is True
    handle = queue.enqueue("cli.sleep", ["marker", 0.8])
    wait_until(lambda: handle.status() is TaskState.RUNNING)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "stopped after 1 task(s)" in stdout
    assert handle.result(timeout=0) == "marker"
    with redis.Redis.from_url(redis_url) as client:
        assert client.get("marker") == b"done"
    assert queue.workers() == []


def test_sigterm_puts_a_task_still_running_after_the_grace_back(
    config: Callable[..., Path],
    queue_for: Callable[[Path], TaskQueue],
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    """Past shutdown_timeout the running task returns to its queue untouched, attempt 1."""
    path = config(shutdown_timeout=0.2)
    queue = queue_for(path)
    process = spawn("--config", str(path), "--tasks", "worker_cli_tasks", "--concurrency", "1")
    handle = queue.enqueue("cli.sleep", ["never", 30])
    wait_until(lambda: handle.status() is TaskState.RUNNING)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=15)
    assert process.returncode == 0
    info = handle.info()
    assert info is not None
    assert (info.state, info.attempt) == (TaskState.QUEUED, 1)


@pytest.mark.parametrize("strategy", ["redis", "kafka"])
def test_stats_dead_letters_redrive_and_purge_commands(
    config: Callable[..., Path],
    queue_for: Callable[[Path], TaskQueue],
    spawn: Callable[..., subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """stats, workers, dlq list/retry and purge read and change the queues, on both strategies."""
    path = config()
    queue = queue_for(path)
    assert cli("worker", "workers", "--config", str(path)) == (1, "no live worker\n")
    process = spawn("--config", str(path), "--tasks", "worker_cli_tasks", "--id", "cli-w1")
    failed = [queue.enqueue("cli.fail") for _ in range(3)]
    for handle in failed:
        wait_until(lambda handle=handle: handle.status() is TaskState.DEAD)  # type: ignore[misc]

    code, out = cli("worker", "stats", "--config", str(path), "--json")
    assert code == 0
    stats = json.loads(out)
    (row,) = stats["queues"]
    assert (row["queue"], row["priority"], row["dead_lettered"], row["dead"]) == (
        "default",
        5,
        3,
        3,
    )
    assert [worker["id"] for worker in stats["workers"]] == ["cli-w1"]
    code, out = cli("worker", "stats", "--config", str(path))
    assert code == 0
    assert "dead_lettered" in out.splitlines()[0]
    assert "1 live worker(s)" in out
    assert cli("worker", "workers", "--config", str(path))[0] == 0

    code, out = cli("worker", "dlq", "list", "--config", str(path))
    assert code == 0
    assert out.count("RuntimeError: broken on purpose") == 3
    code, out = cli("worker", "dlq", "list", "--config", str(path), "--json", "--limit", "2")
    assert [json.loads(line)["error"] for line in out.splitlines()] == [
        "RuntimeError: broken on purpose"
    ] * 2

    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=15)
    capsys.readouterr()
    assert cli("worker", "dlq", "retry", "--config", str(path), "--id", failed[0].id) == (
        0,
        "re-drove 1 task(s)\n",
    )
    assert cli("worker", "dlq", "retry", "--config", str(path)) == (0, "re-drove 2 task(s)\n")
    assert "re-driven 2/2 (100%)" in capsys.readouterr().err
    code, out = cli("worker", "purge", "--config", str(path), "--queue", "default")
    assert (code, out) == (0, "purged 3 queued task(s) from 'default'\n")
    assert "purged 3/3 (100%)" in capsys.readouterr().err
    assert queue.broker.count("default", "queued") == 0


def test_commands_explain_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No worker section, or an in-process strategy, is a clear error, not a traceback."""
    bare = tmp_path / "bare.yaml"
    bare.write_text("service:\n  name: x\n")
    assert cli("worker", "stats", "--config", str(bare))[0] == 1
    assert "no `worker:` section" in capsys.readouterr().err
    local = tmp_path / "local.yaml"
    local.write_text("worker:\n  strategy: threads\n")
    assert cli("worker", "run", "--config", str(local))[0] == 1
    assert "set `worker: {strategy: redis}` (or kafka) to run worker" in capsys.readouterr().err
    assert cli("worker", "dlq", "list", "--config", str(local))[0] == 1
    assert "no shared queue to inspect" in capsys.readouterr().err
