"""Translate SQLAlchemy and driver exceptions into the dtpyfw tree.

* a violated unique, foreign-key, check or not-null constraint becomes
  :class:`~dtpyfw.core.errors.IntegrityError` (HTTP 409);
* an optimistic concurrency conflict (SQLAlchemy's ``StaleDataError``, or a
  repository update whose ``expected_version`` is not the row's) becomes
  :class:`StaleVersionError` (HTTP 409), a :class:`~dtpyfw.core.errors.DatabaseError`;
* any other driver error, a pool timeout or disconnect become
  :class:`~dtpyfw.core.errors.DatabaseError` (HTTP 503);
* everything else passes through untouched: application exceptions, and
  SQLAlchemy usage errors such as ``NoResultFound`` or ``MissingGreenlet``,
  which are bugs or "not found" answers rather than an unavailable database.

The message is the driver's first line only, so SQL parameters (which may be
personal data or secrets) stay in the chained original, out of API responses
and of logs that print only ``str(exc)``.
"""

from __future__ import annotations

__all__ = ["StaleVersionError", "translate_error"]

from dtpyfw.core.errors import DatabaseError, IntegrityError


class StaleVersionError(DatabaseError):
    """A versioned row changed since it was read: reload it and try again.

    Raised for :class:`~dtpyfw.db.VersionedMixin` models when a flush finds the
    row's ``version`` moved on, or when ``Repository.update(...,
    expected_version=n)`` / ``delete`` finds another version.
    """

    http_status = 409
    problem_type = "conflict"


def translate_error(exc: BaseException) -> BaseException:
    """The dtpyfw error to raise ``from exc``, or ``exc`` itself when it is not translated."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.orm.exc import StaleDataError

    if isinstance(exc, sa_exc.IntegrityError):
        return IntegrityError(f"constraint violated: {_summary(exc)}")
    if isinstance(exc, StaleDataError):
        return StaleVersionError(f"{type(exc).__name__}: {_summary(exc)}")
    translated = (sa_exc.DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError)
    if isinstance(exc, translated):
        return DatabaseError(f"{type(exc).__name__}: {_summary(exc)}")
    return exc


def _summary(exc: BaseException) -> str:
    # DBAPIError's own str() appends the SQL and its parameters; the driver's does not.
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
