"""Messaging settings: which transport carries which messages, and how they are consumed."""

from __future__ import annotations

__all__ = [
    "IdempotencySettings",
    "KafkaChannelSettings",
    "MessagingSettings",
    "RedisStreamSettings",
    "TransportName",
]

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dtpyfw.core.retry import RetryPolicy

TransportName = Literal["memory", "redis", "kafka"]


class RedisStreamSettings(BaseModel):
    """The ``messaging.redis`` section: how the Redis streams transport keeps and reclaims."""

    model_config = ConfigDict(extra="forbid")

    max_length: int | None = Field(
        default=1_000_000,
        ge=1,
        description="keep about this many entries per stream (XADD MAXLEN ~); null keeps all",
    )
    max_age: float | None = Field(
        default=None,
        gt=0,
        description="keep about this many seconds of entries (XADD MINID ~); "
        "when set it replaces max_length",
    )
    claim_idle: float = Field(
        default=60.0,
        gt=0,
        description="seconds a delivered message may stay unacknowledged before another "
        "consumer reclaims it (XAUTOCLAIM); longer than your slowest handler",
    )
    claim_interval: float = Field(
        default=5.0, gt=0, description="seconds between scans for messages to reclaim"
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="deliveries a message may get without an acknowledgement (each reclaim "
        "after its consumer died or stalled counts) before it is dead-lettered",
    )


class KafkaChannelSettings(BaseModel):
    """The ``messaging.kafka`` section: topics the Kafka transport creates."""

    model_config = ConfigDict(extra="forbid")

    create_topics: bool = Field(
        default=True,
        description="create missing topics through the admin API when the broker has one "
        "(else the broker auto-creates them)",
    )
    partitions: int = Field(default=3, ge=1, description="partitions of a created topic")
    replication_factor: int = Field(
        default=1, ge=1, description="replicas of a created topic's partitions"
    )


class IdempotencySettings(BaseModel):
    """The ``messaging.idempotency`` section: the store of processed message ids."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "memory", "redis"] = Field(
        default="auto",
        description="where processed ids are kept; auto is redis when a `redis:` section "
        "exists, else memory",
    )
    ttl: float = Field(default=86400.0, gt=0, description="seconds a processed id is remembered")
    lease: float = Field(
        default=300.0,
        gt=0,
        description="seconds a handler's claim on a message lasts (skip_processed); a copy "
        "delivered meanwhile waits for its outcome; longer than your slowest handler",
    )
    prefix: str = Field(default="idempotency", min_length=1, description="Redis key prefix")
    skip_processed: bool = Field(
        default=False,
        description="the runner claims each message for its group before the handler runs "
        "(one atomic claim and one write per message): a processed message is skipped, and "
        "two copies in flight at once never both run",
    )


class MessagingSettings(BaseModel):
    """The ``messaging`` section. Defaults give the in-memory bus."""

    model_config = ConfigDict(extra="forbid")

    transport: TransportName = Field(
        default="memory",
        description="memory (embedded), redis (streams; needs a `redis:` section) or kafka "
        "(needs a `kafka:` section)",
    )
    channels: dict[str, TransportName] = Field(
        default_factory=dict,
        description="message types (fnmatch patterns such as 'billing.*', first match wins) "
        "carried by another transport than `transport`",
    )
    source: str = Field(
        default="/dtpyfw", description="CloudEvents `source` stamped on every message sent"
    )
    serializer: Literal["json", "binary"] = Field(
        default="json",
        description="wire format written (both are read): CloudEvents JSON, or binary: raw "
        "bytes data (on Kafka the binding's binary mode, elsewhere a compact frame)",
    )
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(attempts=3, initial_delay=0.05, max_delay=1.0),
        description="handler retries before a message is dead-lettered",
    )
    publish_retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(attempts=8, initial_delay=0.05, max_delay=1.0),
        description="retries of a publish on connection errors and timeouts (redis, kafka)",
    )
    channel_prefix: str = Field(
        default="", description="prefix of every stream/topic name (e.g. 'prod.')"
    )
    command_suffix: str = Field(
        default=".commands", description="commands of type T travel on <prefix>T<suffix>"
    )
    dead_letter_suffix: str = Field(
        default=".dlq", description="dead letters of a channel go to <channel><suffix>"
    )
    group_prefix: str = Field(
        default="",
        description="prefix of consumer group names on the broker (e.g. 'billing-svc.'), so "
        "services sharing a broker keep their groups apart",
    )
    start_from: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="where a new consumer group starts reading: the oldest message kept, "
        "or only messages published after it joined",
    )
    concurrency: int = Field(
        default=8, ge=1, le=1024, description="handlers a runner runs at once, per group"
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="messages a runner holds unfinished per group before it stops fetching "
        "(Kafka: pauses its partitions)",
    )
    batch_size: int = Field(default=100, ge=1, description="messages fetched per broker read")
    poll_timeout: float = Field(
        default=1.0, gt=0, description="seconds a broker read waits for new messages"
    )
    shutdown_timeout: float = Field(
        default=30.0,
        ge=0,
        description="seconds a stopping runner waits for handlers in flight before it gives "
        "their messages back unacknowledged",
    )
    idempotency: IdempotencySettings = Field(
        default_factory=IdempotencySettings, description="the store of processed message ids"
    )
    redis: RedisStreamSettings = Field(
        default_factory=RedisStreamSettings, description="the Redis streams transport"
    )
    kafka: KafkaChannelSettings = Field(
        default_factory=KafkaChannelSettings, description="the Kafka transport's topics"
    )

    def transports(self) -> list[TransportName]:
        """Every transport these settings route messages to, the default first."""
        used = [self.transport]
        used += [name for name in self.channels.values() if name not in used]
        return used
