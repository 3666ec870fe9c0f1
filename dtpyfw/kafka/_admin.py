"""Creating and verifying topics.

:func:`ensure_topics` creates missing topics through the admin API
(``CreateTopics``, brokers 0.10.1+). Where the broker has no such API
(librdkafka's mock cluster, Kafka 0.9) it falls back to the broker's
auto-creation: it asks for each topic's metadata, which creates it with the
broker's default partition count, and reports that in the result.
"""

from __future__ import annotations

__all__ = ["TopicReport", "create_topics", "ensure_topics"]

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dtpyfw.core.errors import MessagingError
from dtpyfw.kafka._client import admin_config, kafka_errors, producer_config, require_kafka
from dtpyfw.kafka._settings import KafkaSettings

logger = logging.getLogger("dtpyfw.kafka")


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What :func:`ensure_topics` found or did for one topic."""

    topic: str
    #: "created" by the admin API, "exists" already, or "auto-created" through metadata.
    outcome: Literal["created", "exists", "auto-created"]
    partitions: int


def create_topics(  # noqa: PLR0911 - one early return per broker capability case
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> set[str] | None:
    """Create the missing ``topics``; returns those created, or None without an admin API."""
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return set()
    kafka_module = require_kafka()
    errors = kafka_module.errors
    no_api = (errors.IncompatibleBrokerVersion, errors.UnrecognizedBrokerVersion)
    try:
        admin = kafka_module.KafkaAdminClient(**admin_config(settings))
    except no_api:
        return None
    except kafka_errors() as exc:
        raise MessagingError(f"cannot reach Kafka to create topics: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [topic for topic in wanted if topic not in existing]
        if not missing:
            return set()
        new = [kafka_module.admin.NewTopic(t, partitions, replication_factor) for t in missing]
        try:
            admin.create_topics(new, timeout_ms=int(timeout * 1000))
        except errors.TopicAlreadyExistsError:
            return set()  # created meanwhile by someone else
        return set(missing)
    except no_api:
        return None
    except ValueError as exc:
        # kafka-python 2.3 cannot decode some brokers' metadata (librdkafka's mock
        # cluster reports ACL operations it does not know): treat as no admin API.
        logger.debug("the Kafka admin API is unusable here: %s", exc)
        return None
    except kafka_errors() as exc:
        raise MessagingError(f"creating Kafka topics {wanted} failed: {exc}") from exc
    finally:
        admin.close()


def ensure_topics(
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> list[TopicReport]:
    """Make sure ``topics`` exist; see the module docstring. MessagingError on failure."""
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return []
    created = create_topics(
        settings,
        wanted,
        partitions=partitions,
        replication_factor=replication_factor,
        timeout=timeout,
    )
    if created is None:
        logger.info("the broker has no CreateTopics API: relying on topic auto-creation")
    counts = _partition_counts(settings, wanted)
    if created is None:
        return [TopicReport(t, "auto-created", counts.get(t, 0)) for t in wanted]
    return [
        TopicReport(t, "created" if t in created else "exists", counts.get(t, 0)) for t in wanted
    ]


def _partition_counts(settings: KafkaSettings, topics: list[str]) -> dict[str, int]:
    kafka_module = require_kafka()
    producer = kafka_module.KafkaProducer(**producer_config(settings))
    try:
        return {topic: len(producer.partitions_for(topic) or ()) for topic in topics}
    except kafka_errors() as exc:
        raise MessagingError(f"no metadata for Kafka topics {topics}: {exc}") from exc
    finally:
        producer.close(timeout=5)
