"""The Kafka test harness: the mock cluster launcher and the environment override."""

from __future__ import annotations

import pytest

from dtpyfw.kafka import KafkaSettings, Producer
from dtpyfw.testing import BackendUnavailable, bootstrap_of, create_topic, find_kafka
from dtpyfw.testing._backends import _find_or_skip


def test_mock_cluster_starts_creates_topics_and_stops() -> None:
    """launch='always' starts a private mock cluster; create_topic sets the partition count."""
    handle = _find_or_skip(lambda: find_kafka(launch="always"))
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
