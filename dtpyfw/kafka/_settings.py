"""Kafka connection, security, producer and consumer settings (kafka-python 2.3.x)."""

from __future__ import annotations

__all__ = ["KafkaConsumerSettings", "KafkaProducerSettings", "KafkaSettings"]

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class KafkaProducerSettings(BaseModel):
    """The ``kafka.producer`` section."""

    model_config = ConfigDict(extra="forbid")

    acks: Literal[0, 1, "all"] = Field(
        default="all",
        description="acknowledgements a write needs: 0 (none), 1 (the leader) or all (every "
        "in-sync replica)",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none",
        description="batch compression; snappy, lz4 and zstd need their Python packages",
    )
    linger_ms: int = Field(
        default=5, ge=0, description="milliseconds a batch waits for more messages before sending"
    )
    batch_size: int = Field(default=16384, ge=0, description="bytes per partition batch")
    max_in_flight: int = Field(
        default=5, ge=1, description="unacknowledged requests per connection"
    )
    retries: int = Field(default=5, ge=0, description="resends of a failed batch")
    delivery_timeout: float = Field(
        default=120.0,
        gt=0,
        description="seconds a message may take to be acknowledged, retries included",
    )
    max_block: float = Field(
        default=60.0,
        gt=0,
        description="seconds publish may block for metadata or buffer space",
    )
    confirm_timeout: float = Field(
        default=30.0, gt=0, description="seconds publish() waits for the broker's acknowledgement"
    )
    enable_idempotence: bool = Field(
        default=False,
        description="exactly-once writes per partition (brokers 0.11+); needs acks all, "
        "retries above 0 and max_in_flight 1 (the default then)",
    )

    @model_validator(mode="before")
    @classmethod
    def _idempotence_defaults(cls, data: Any) -> Any:
        # kafka-python 2.3 keeps order under retries only with one request in
        # flight, and refuses an idempotent producer otherwise, at connect time:
        # when max_in_flight is not given, idempotence implies 1.
        if isinstance(data, dict) and data.get("enable_idempotence") is True:
            return {"max_in_flight": 1, **data}
        return data

    @model_validator(mode="after")
    def _check_idempotence(self) -> KafkaProducerSettings:
        if not self.enable_idempotence:
            return self
        problems = []
        if self.acks != "all":
            problems.append(f"acks must be 'all' (got {self.acks!r})")
        if self.retries == 0:
            problems.append("retries must be above 0")
        if self.max_in_flight != 1:
            problems.append(f"max_in_flight must be 1 (got {self.max_in_flight})")
        if problems:
            raise ValueError("enable_idempotence needs " + "; ".join(problems))
        return self


class KafkaConsumerSettings(BaseModel):
    """The ``kafka.consumer`` section."""

    model_config = ConfigDict(extra="forbid")

    session_timeout: float = Field(
        default=10.0, gt=0, description="seconds without heartbeat before a member is dropped"
    )
    heartbeat_interval: float = Field(default=3.0, gt=0, description="seconds between heartbeats")
    max_poll_interval: float = Field(
        default=300.0, gt=0, description="seconds between polls before a member is dropped"
    )
    max_poll_records: int = Field(default=500, ge=1, description="records one poll returns")
    fetch_max_wait: float = Field(
        default=0.5, ge=0, description="seconds the broker holds a fetch waiting for data"
    )
    commit_interval: float = Field(
        default=1.0,
        ge=0,
        description="seconds between offset commits of handled messages (also at "
        "rebalance and shutdown)",
    )
    revoke_timeout: float = Field(
        default=10.0,
        ge=0,
        description="seconds a rebalance waits for handlers of revoked partitions to finish "
        "before committing",
    )

    @model_validator(mode="after")
    def _heartbeat_inside_session(self) -> KafkaConsumerSettings:
        if self.heartbeat_interval >= self.session_timeout:
            raise ValueError("heartbeat_interval must be shorter than session_timeout")
        return self


class KafkaSettings(BaseModel):
    """The ``kafka`` section: brokers, security, and client tuning."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        min_length=1,
        description="host:port of brokers to start from (a comma-separated string works too)",
    )
    client_id: str = Field(default="dtpyfw", description="client id the brokers log")
    api_version: str | None = Field(
        default=None,
        description="broker protocol version as 'X.Y[.Z]' (e.g. '0.9' for Kafka 0.9); "
        "null probes the broker",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (with a SASL_* protocol)"
    )
    sasl_username: str | None = Field(default=None, description="SASL user name")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password")
    ssl_cafile: str | None = Field(default=None, description="CA bundle to trust for SSL")
    ssl_certfile: str | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: str | None = Field(default=None, description="client private key")
    ssl_password: SecretStr | None = Field(default=None, description="password of the key")
    ssl_check_hostname: bool = Field(
        default=True, description="check the broker certificate's host name"
    )
    request_timeout: float = Field(default=30.0, gt=0, description="seconds per request")
    health_timeout: float = Field(
        default=5.0, gt=0, description="seconds the health check may take"
    )
    producer: KafkaProducerSettings = Field(
        default_factory=KafkaProducerSettings, description="producer tuning"
    )
    consumer: KafkaConsumerSettings = Field(
        default_factory=KafkaConsumerSettings, description="consumer tuning"
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None:
            parts = value.split(".")
            if not 2 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
                raise ValueError(f"api_version must look like '0.9' or '2.4.0', not {value!r}")
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or self.sasl_username is None):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password"
            )
        if sasl and self.sasl_password is None:
            raise ValueError("sasl_password is required with a SASL_* security_protocol")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(
                "sasl_mechanism is set but security_protocol is not SASL_PLAINTEXT or SASL_SSL"
            )
        return self

    def version_tuple(self) -> tuple[int, ...] | None:
        """``api_version`` as kafka-python wants it, e.g. ``(0, 9)``."""
        if self.api_version is None:
            return None
        return tuple(int(part) for part in self.api_version.split("."))
