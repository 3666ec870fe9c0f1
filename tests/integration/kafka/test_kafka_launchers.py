"""The Kafka test harness: the Kafka 4 launcher, the mock cluster and the environment override."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dtpyfw.kafka import Consumer, KafkaSettings, Producer
from dtpyfw.testing import (
    KAFKA_VERSION,
    BackendUnavailable,
    KafkaBroker,
    bootstrap_of,
    create_topic,
    find_kafka,
    start_kafka_broker,
    start_kafka_mock,
    wait_until,
)
from dtpyfw.testing._backends import _find_or_skip
from dtpyfw.testing._kafka_broker import _runs_in, _runs_root, _sweep_stale_runs


def _read(bootstrap: str, topic: str, count: int) -> list[bytes]:
    with Consumer(KafkaSettings(bootstrap_servers=[bootstrap]), None) as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek_to_beginning()
        values: list[bytes] = []

        def more() -> bool:
            values.extend(record.value for record in consumer.poll(0.2))
            return len(values) >= count

        wait_until(more, timeout=30, what=f"{count} records on {topic}")
        return values


def test_kafka4_starts_keeps_its_data_across_a_kill_and_stops_cleanly() -> None:
    """launch='always' starts Kafka 4; SIGKILL + start keeps the log; stop leaves nothing."""
    handle = _find_or_skip(lambda: find_kafka(launch="always"))
    broker = handle._owner
    assert isinstance(broker, KafkaBroker)
    try:
        assert handle.origin == "process"
        assert handle.url == f"kafka://127.0.0.1:{broker.port}"
        create_topic(handle, "five", 5)
        settings = KafkaSettings(bootstrap_servers=[broker.bootstrap])
        with Producer(settings) as producer:
            assert producer.partitions_for("five") == {0, 1, 2, 3, 4}
            assert producer.supports_headers
            producer.publish("kept", b"before the crash", partition=0)
        assert broker.process is not None
        os.killpg(broker.process.pid, signal.SIGKILL)  # a crash nobody asked for
        wait_until(lambda: not broker.alive, what="the broker to exit")
        assert "exited (-9)" in (broker.died() or "")
        broker.start()
        assert _read(broker.bootstrap, "kept", 1) == [b"before the crash"]
        directory = broker.directory
        process = broker.process
    finally:
        handle.stop()
    assert process is not None
    assert process.poll() is not None
    assert directory is not None
    assert not directory.exists()
    assert broker.died() is None  # stopped on purpose: not reported as a death
    handle.stop()  # twice is harmless


def test_a_run_killed_before_cleanup_is_swept_by_the_next_start(tmp_path: Path) -> None:
    """A broker directory whose owner died: its process is killed and the directory removed."""
    owner = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    # A directory named after a test process that has exited, like a SIGKILLed run's.
    stale = _runs_root() / f"{owner.stdout.strip()}-{uuid.uuid4().hex[:6]}"
    stale.mkdir(parents=True)
    # A stand-in for an orphaned broker: its own process group, the directory on its command line.
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", str(stale)],
        start_new_session=True,
    )
    (stale / "broker.pid").write_text(str(orphan.pid))
    # A process shows its command line only once its interpreter is loaded.
    wait_until(lambda: _runs_in(orphan.pid, stale), what="the stand-in to start")
    live = _runs_root() / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"  # this run's: left alone
    live.mkdir(parents=True)
    try:
        _sweep_stale_runs()
        assert orphan.wait(timeout=10) != 0
        assert not stale.exists()
        assert live.exists()
    finally:
        orphan.kill()
        orphan.wait()
        live.rmdir()


def test_missing_java_is_one_line_naming_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Java: BackendUnavailable says so and points at DTPYFW_TEST_KAFKA_URL."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BackendUnavailable) as caught:
        start_kafka_broker()
    message = str(caught.value)
    assert f"Kafka {KAFKA_VERSION}" in message
    assert "java: not found" in message
    assert "DTPYFW_TEST_KAFKA_URL" in message


def test_mock_cluster_starts_creates_topics_and_stops() -> None:
    """start_kafka_mock hosts librdkafka's 3-broker mock; create_topic uses its own API."""
    handle = start_kafka_mock()
    try:
        assert handle.origin == "process"
        assert handle.url.startswith("kafka://127.0.0.1:")
        assert len(bootstrap_of(handle).split(",")) == 3
        create_topic(handle, "five", 5)
        with Producer(KafkaSettings(bootstrap_servers=bootstrap_of(handle).split(","))) as producer:
            assert producer.partitions_for("five") == {0, 1, 2, 3, 4}
        process = handle._owner.process  # type: ignore[union-attr]
    finally:
        handle.stop()
    assert process.poll() is not None
    handle.stop()  # twice is harmless


def test_env_url_that_does_not_answer_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken DTPYFW_TEST_KAFKA_URL is named in the error and nothing else is tried."""
    monkeypatch.setenv("DTPYFW_TEST_KAFKA_URL", "127.0.0.1:1")
    with pytest.raises(BackendUnavailable, match=r"DTPYFW_TEST_KAFKA_URL=kafka://127\.0\.0\.1:1"):
        find_kafka()


def test_a_test_whose_broker_died_is_reported_as_such(tmp_path: Path) -> None:
    """The plugin adds the broker's death, with its log, to the failing test's report."""
    (tmp_path / "test_dies.py").write_text(
        "import os, signal\n"
        "from dtpyfw.testing import wait_until\n"
        "def test_broker_dies(kafka_broker):\n"
        "    os.killpg(kafka_broker.process.pid, signal.SIGKILL)\n"
        "    wait_until(lambda: not kafka_broker.alive)\n"
        "    raise TimeoutError('publish timed out')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "dtpyfw: a Kafka broker of this run died" in result.stdout
    assert f"Kafka {KAFKA_VERSION} at 127.0.0.1:" in result.stdout
    assert "exited (" in result.stdout
