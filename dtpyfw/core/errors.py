"""The dtpyfw exception tree.

Every exception dtpyfw raises on purpose derives from :class:`DtpyfwError`.
Third-party exceptions are chained (``raise ... from exc``), never swallowed::

    DtpyfwError
    ├── ConfigError            bad settings: lists every problem at once
    ├── ContainerError         the provider graph cannot serve a request
    │   ├── ValidationFailed   container.validate() found broken providers
    │   ├── NotConfigured      a subsystem absent from the settings was used
    │   ├── ScopeError         a request-scoped provider used outside a scope
    │   └── WiringError        an @inject function whose module was not wired
    ├── DependencyMissing      an optional extra is not installed (also ImportError)
    ├── HttpError              a downstream HTTP call failed
    ├── DatabaseError          SQLAlchemy / driver failures
    │   ├── IntegrityError     a constraint was violated
    │   ├── StaleVersionError  optimistic locking lost a race (dtpyfw.db, 409)
    │   └── FilterError        a filter/sort/cursor from user input is not allowed
    ├── StorageError           object storage failures
    │   ├── ObjectNotFound
    │   ├── AccessDenied
    │   ├── InvalidKey
    │   ├── NotSupported
    │   └── StorageUnavailable
    ├── MessagingError         publish / consume failures
    │   ├── HandlerNotFound
    │   ├── InvalidMessage     dtpyfw.messaging: a message that cannot be decoded
    │   └── PublishFailed      dtpyfw.kafka: the broker refused or timed out a write
    ├── CacheError             Redis client failures
    │   ├── LockTimeout        dtpyfw.redis: a lock was not acquired in time
    │   └── LockLost           dtpyfw.redis: a held lock expired before its release
    ├── FtpError               dtpyfw.ftp: FtpAuthError, FtpConnectionError, FtpTlsError,
    │                          FtpNotFound, FtpIntegrityError, FtpPoolTimeout, InvalidPath
    ├── WorkerError            dtpyfw.worker: TaskNotFound, InvalidTaskArguments,
    │                          InvalidTaskResult, InvalidSchedule, TaskFailed,
    │                          TaskCancelled, ResultTimeout, time limits
    ├── RateLimited            dtpyfw.api: too many requests (429, Retry-After)
    ├── BackendUnavailable     dtpyfw.testing: no server for an integration test
    └── SecurityError          dtpyfw.security: PasswordError, TokenError (401) ->
                               TokenExpired, TokenNotYetValid, InvalidAudience,
                               InvalidIssuer, InvalidSignature, MalformedToken,
                               TokenRevoked; AuthenticationError; PermissionDenied (403)
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "CacheError",
    "ConfigError",
    "ConfigIssue",
    "ContainerError",
    "DatabaseError",
    "DependencyMissing",
    "DtpyfwError",
    "FilterError",
    "HandlerNotFound",
    "HttpError",
    "IntegrityError",
    "InvalidKey",
    "MessagingError",
    "NotConfigured",
    "NotSupported",
    "ObjectNotFound",
    "ScopeError",
    "StorageError",
    "StorageUnavailable",
    "ValidationFailed",
    "WiringError",
]

from dataclasses import dataclass


class DtpyfwError(Exception):
    """Root of every exception dtpyfw raises on purpose."""

    #: The RFC 9457 ``type`` slug and HTTP status the API layer maps this to.
    problem_type: str = "internal-error"
    http_status: int = 500


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found while loading settings."""

    path: str
    message: str
    source: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.source or "<settings>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        if not self.path:
            return f"{where}: {self.message}"
        return f"{where}: {self.path}: {self.message}"


class ConfigError(DtpyfwError):
    """Settings could not be loaded; ``issues`` lists every problem found."""

    problem_type = "config-error"

    def __init__(self, issues: list[ConfigIssue] | ConfigIssue | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(path="", message=issues)]
        elif isinstance(issues, ConfigIssue):
            issues = [issues]
        # File order first (then line), so the list reads top to bottom like the file.
        self.issues: list[ConfigIssue] = sorted(
            issues, key=lambda i: (i.source is None, i.source or "", i.line or 0)
        )
        count = len(self.issues)
        head = f"invalid settings ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  - {issue}" for issue in self.issues)]))


class ContainerError(DtpyfwError):
    """The provider graph cannot serve what was asked of it."""


class ValidationFailed(ContainerError):
    """``container.validate()`` found providers that cannot be resolved."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"container validation failed ({len(problems)} problem(s)):\n{lines}")


class NotConfigured(ContainerError):
    """A provider of a subsystem that the settings leave out was resolved."""

    http_status = 503
    problem_type = "not-configured"


class ScopeError(ContainerError):
    """A request-scoped provider was resolved outside ``container.scope()``."""


class WiringError(ContainerError, AttributeError):
    """An ``@inject`` function ran although its module was never wired.

    Also an ``AttributeError`` (it is raised from attribute access on the marker),
    so ``getattr(marker, name, default)`` and ``hasattr`` keep their meaning.
    """


class DependencyMissing(DtpyfwError, ImportError):
    """An optional extra is not installed; the message names the install command."""


class HttpError(DtpyfwError):
    """A downstream HTTP call failed after its retries."""

    http_status = 502
    problem_type = "bad-gateway"


class DatabaseError(DtpyfwError):
    """A database operation failed; the driver's error is chained."""

    http_status = 503
    problem_type = "database-error"


class IntegrityError(DatabaseError):
    """A unique, foreign-key or check constraint was violated."""

    http_status = 409
    problem_type = "conflict"


class FilterError(DatabaseError):
    """A filter, sort or cursor built from user input names something not declared."""

    http_status = 400
    problem_type = "invalid-filter"


class StorageError(DtpyfwError):
    """An object storage operation failed; the backend's error is chained."""

    http_status = 503
    problem_type = "storage-error"


class ObjectNotFound(StorageError):
    """The key does not exist in the store."""

    http_status = 404
    problem_type = "not-found"


class AccessDenied(StorageError):
    """The backend refused the credentials or the operation."""

    http_status = 403
    problem_type = "forbidden"


class InvalidKey(StorageError):
    """The key is malformed or escapes the store's root."""

    http_status = 400
    problem_type = "invalid-key"


class NotSupported(StorageError):
    """The backend does not offer this operation (e.g. presigned URLs on disk)."""

    http_status = 501
    problem_type = "not-supported"


class StorageUnavailable(StorageError):
    """The backend could not be reached (after retries for idempotent calls)."""


class MessagingError(DtpyfwError):
    """Publishing or consuming failed."""

    http_status = 503
    problem_type = "messaging-error"


class HandlerNotFound(MessagingError):
    """A command was sent for a type with no registered handler."""


class CacheError(DtpyfwError):
    """A Redis/cache operation failed."""

    http_status = 503
    problem_type = "cache-error"
