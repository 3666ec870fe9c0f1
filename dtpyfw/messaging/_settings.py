"""Messaging settings: which transport carries events and commands."""

from __future__ import annotations

__all__ = ["MessagingSettings"]

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dtpyfw.core.retry import RetryPolicy


class MessagingSettings(BaseModel):
    """The ``messaging`` section. Defaults give the in-memory bus."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["memory"] = Field(
        default="memory", description="memory (embedded); redis and kafka come with their extras"
    )
    source: str = Field(
        default="/dtpyfw", description="CloudEvents `source` stamped on every message sent"
    )
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(attempts=3, initial_delay=0.05, max_delay=1.0),
        description="handler retries before a message is dead-lettered",
    )
    dead_letter_suffix: str = Field(
        default=".dlq", description="dead-lettered messages go to <type><suffix>"
    )
