"""One retry policy for every subsystem, with tenacity underneath."""

from __future__ import annotations

__all__ = ["RetryPolicy"]

from collections.abc import Awaitable, Callable
from typing import TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """Attempts with capped, jittered exponential backoff.

    ``attempts`` counts the first call: ``attempts=1`` never retries. Only
    exceptions in ``retry_on`` are retried; anything else propagates at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    attempts: int = Field(default=3, ge=1, le=100, description="tries in all, the first included")
    initial_delay: float = Field(default=0.1, ge=0, description="seconds before the 1st retry")
    max_delay: float = Field(default=5.0, ge=0, description="cap on one backoff sleep, seconds")
    multiplier: float = Field(default=2.0, ge=1, description="growth of the delay per retry")
    jitter: float = Field(default=0.1, ge=0, description="random extra seconds, 0..jitter")
    # Code decides which exceptions are transient; files and schemas never see this field.
    retry_on: SkipJsonSchema[tuple[type[BaseException], ...]] = Field(
        default=(Exception,), exclude=True
    )

    def delay_for(self, retry_number: int) -> float:
        """Backoff before retry number ``retry_number`` (1-based), without jitter."""
        return float(
            min(self.max_delay, self.initial_delay * self.multiplier ** (retry_number - 1))
        )

    def call(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        """Call ``fn`` under this policy; the last exception propagates unchanged."""
        return self._retrying(tenacity.Retrying)(fn, *args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: object, **kwargs: object) -> T:
        """Async twin of :meth:`call`; sleeps with ``asyncio.sleep``."""
        retrying = self._retrying(tenacity.AsyncRetrying)
        return await retrying(fn, *args, **kwargs)

    def _retrying(self, kind: type[tenacity.BaseRetrying]) -> tenacity.BaseRetrying:
        wait: tenacity.wait.wait_base = tenacity.wait_exponential(
            multiplier=self.initial_delay, exp_base=self.multiplier, max=self.max_delay
        )
        if self.jitter:
            wait = wait + tenacity.wait_random(0, self.jitter)
        return kind(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=wait,
            retry=tenacity.retry_if_exception_type(self.retry_on),
            reraise=True,
        )
