"""Running one handler on one message: retries, permanent failures, idempotency, logs.

Every transport delivers through :class:`Dispatcher`, so a handler fails and
is retried the same way whatever carries its messages:

- the handler runs under the :class:`~dtpyfw.core.retry.RetryPolicy`
  (its attempts, backoff, jitter and ``retry_on``; the first attempt runs
  directly, so a message that succeeds pays nothing for the policy); each
  failure that will be retried is a WARNING on ``dtpyfw.messaging``;
- :class:`~dtpyfw.messaging.InvalidMessage` (data that does not match the
  registered model) is never retried: retrying cannot fix the data;
- after the last attempt the dispatcher returns a :class:`Failure` and the
  transport dead-letters the message (:func:`log_dead_letter` logs it at
  ERROR with the exception);
- with an idempotency store and ``skip_processed``, the group's key for the
  message is claimed atomically before the handler runs: a message already
  handled is skipped, a copy being handled elsewhere is waited for (then
  skipped, or run if that attempt failed or its holder died), a success is
  recorded and a final failure releases the claim.
"""

from __future__ import annotations

__all__ = [
    "DeadLetter",
    "Dispatcher",
    "Failure",
    "aretry_call",
    "describe",
    "log_dead_letter",
    "retry_call",
]

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dtpyfw.core.retry import RetryPolicy
from dtpyfw.messaging._message import InvalidMessage, Message

if TYPE_CHECKING:
    from dtpyfw.messaging._bus import AsyncConsumer, Consumer
    from dtpyfw.messaging._idempotency import IdempotencyStore

T = TypeVar("T")

logger = logging.getLogger("dtpyfw.messaging")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that ``group`` failed to handle on every attempt.

    ``message`` is None when the bytes received were not a message at all;
    ``raw`` then holds them.
    """

    message: Message | None
    group: str
    #: The last attempt's exception, as ``"TypeName: message"``.
    error: str
    channel: str = ""
    attempts: int = 0
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class Failure:
    """How a delivery ended when every attempt failed."""

    error: BaseException
    attempts: int

    def describe(self) -> str:
        """``"TypeName: message"``, the form dead letters carry."""
        return describe(self.error)


class Dispatcher:
    """Runs a group's handler on a message under ``retry``; see the module docstring."""

    def __init__(
        self,
        retry: RetryPolicy,
        *,
        idempotency: IdempotencyStore | None = None,
        skip_processed: bool = False,
    ) -> None:
        self.retry = retry
        self.idempotency = idempotency
        self.skip_processed = skip_processed and idempotency is not None

    def run(self, consumer: Consumer, message: Message, group: str) -> Failure | None:
        """Handle ``message`` in ``group``; None on success, else the Failure."""
        store = self.idempotency if self.skip_processed else None
        key = f"{group}:{message.id}" if store is not None else ""
        if store is not None:
            wait = _ClaimWait()
            while (claim := store.claim(key)) == "running":
                time.sleep(wait.next())
            if claim == "done":
                _log_skip(message, group)
                return None
        retry = self.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                consumer.handle(message, group)
            except InvalidMessage as exc:
                failure = Failure(exc, attempt)
            except Exception as exc:
                if _will_retry(retry, exc, attempt, message, group):
                    time.sleep(_backoff(retry, attempt))
                    continue
                failure = Failure(exc, attempt)
            else:
                if store is not None:
                    store.mark(key)
                return None
            if store is not None:
                store.release(key)
            return failure

    async def arun(self, consumer: AsyncConsumer, message: Message, group: str) -> Failure | None:
        """Async twin of :meth:`run`."""
        store = self.idempotency if self.skip_processed else None
        key = f"{group}:{message.id}" if store is not None else ""
        if store is not None:
            wait = _ClaimWait()
            # The claim may be another process's: only polling the store can tell.
            while (claim := await store.aclaim(key)) == "running":  # noqa: ASYNC110
                await asyncio.sleep(wait.next())
            if claim == "done":
                _log_skip(message, group)
                return None
        retry = self.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                await consumer.handle(message, group)
            except InvalidMessage as exc:
                failure = Failure(exc, attempt)
            except Exception as exc:
                if _will_retry(retry, exc, attempt, message, group):
                    await asyncio.sleep(_backoff(retry, attempt))
                    continue
                failure = Failure(exc, attempt)
            else:
                if store is not None:
                    await store.amark(key)
                return None
            if store is not None:
                await store.arelease(key)
            return failure


class _ClaimWait:
    """Pauses between looks at a claim another consumer holds: 10 ms, doubling to 0.5 s."""

    __slots__ = ("_pause",)

    def __init__(self) -> None:
        self._pause = 0.01

    def next(self) -> float:
        pause = self._pause
        self._pause = min(0.5, pause * 2)
        return pause


def log_dead_letter(
    message: Message | None, group: str, failure: Failure, *, channel: str = ""
) -> None:
    """The ERROR every dead letter gets, with the exception and where it came from."""
    message_id = message.id if message is not None else None
    message_type = message.type if message is not None else None
    logger.error(
        "message %s of type %r dead-lettered by group %r after %d attempt(s)",
        message_id,
        message_type,
        group,
        failure.attempts,
        exc_info=failure.error,
        extra={
            "message_id": message_id,
            "message_type": message_type,
            "group": group,
            "attempts": failure.attempts,
            "channel": channel,
        },
    )


def describe(error: BaseException) -> str:
    """``"TypeName: message"``."""
    return f"{type(error).__name__}: {error}"


def retry_call(policy: RetryPolicy, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args)`` under ``policy``: the first try costs nothing extra, retries back off."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt >= policy.attempts or not isinstance(exc, policy.retry_on):
                raise
        time.sleep(_backoff(policy, attempt))


async def aretry_call(
    policy: RetryPolicy, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
) -> T:
    """Async twin of :func:`retry_call`."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if attempt >= policy.attempts or not isinstance(exc, policy.retry_on):
                raise
        await asyncio.sleep(_backoff(policy, attempt))


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    """The policy's delay before retry number ``attempt``, with its jitter."""
    jitter = random.uniform(0, policy.jitter) if policy.jitter else 0.0  # noqa: S311 - not crypto
    return policy.delay_for(attempt) + jitter


def _will_retry(
    retry: RetryPolicy, exc: Exception, attempt: int, message: Message, group: str
) -> bool:
    """Whether attempt number ``attempt`` failing with ``exc`` is retried; logs when it is."""
    if attempt >= retry.attempts or not isinstance(exc, retry.retry_on):
        return False  # the caller dead-letters it
    logger.warning(
        "handler for message %s of type %r in group %r failed (attempt %d of %d): %s",
        message.id,
        message.type,
        group,
        attempt,
        retry.attempts,
        exc,
        extra={
            "message_id": message.id,
            "message_type": message.type,
            "group": group,
            "attempt": attempt,
        },
    )
    return True


def _log_skip(message: Message, group: str) -> None:
    logger.debug(
        "message %s already processed by group %r: skipped",
        message.id,
        group,
        extra={"message_id": message.id, "group": group},
    )
