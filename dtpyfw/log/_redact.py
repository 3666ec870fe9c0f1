"""Mask secrets in log records before any handler formats them.

What is masked, with :data:`REDACTED`:

- values of ``extra=`` fields, dict-valued arguments and nested dicts/lists whose
  key contains a sensitive name (``password``, ``token``, ``api_key``...);
  matching ignores case, ``-`` and ``_`` so ``X-Api-Key`` and ``db_password`` match;
- ``pydantic.SecretStr`` / ``SecretBytes`` anywhere in arguments or extras;
- fragments of the message text (and of tracebacks and string extras):
  ``password=...``, ``"token": "..."``, ``Authorization: Bearer ...``, a bare
  ``Bearer <token>``, ``Basic <base64>`` and the password in ``scheme://user:pw@host``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_REDACT_KEYS", "REDACTED", "RedactingFilter"]

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretBytes, SecretStr

from dtpyfw.log._context import record_extras

REDACTED = "**********"

#: Key names masked by default; extend them with ``LogSettings.redact_keys``.
DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "authorization",
    "api_key",
    "apikey",
    "cookie",
    "set-cookie",
    "private_key",
    "credentials",
)


class RedactingFilter(logging.Filter):
    """A filter that masks secrets in place and always lets the record through.

    Attach it to every handler (``configure_logging`` does): filters on a logger
    do not see records that propagate from child loggers. Running it twice on a
    record is harmless; the second pass is skipped.
    """

    def __init__(self, redact_keys: Iterable[str] = ()) -> None:
        super().__init__()
        names = {_normalise(key) for key in (*DEFAULT_REDACT_KEYS, *redact_keys)}
        names.discard("")
        # Longest first so the regex alternation prefers the most specific name.
        self._names = tuple(sorted(names, key=lambda n: (-len(n), n)))
        self._mark = id(self)
        alternation = "|".join("[-_]?".join(map(re.escape, name)) for name in self._names)
        self._key_value = re.compile(
            rf"""
            (?<![\w-])(?:[\w-]*?(?:{alternation})[\w-]*)    # a sensitive key
            ["']?\s*[:=]\s*                                   # = or : (after a JSON key)
            (?P<quote>["'])?
            (?P<value>(?(quote)[^"']*
                |(?:(?:bearer|basic|digest|token)\s+)?[^\s"'&,;)}}\]]+))
            """,
            re.IGNORECASE | re.VERBOSE,
        )

    def is_sensitive(self, key: str) -> bool:
        """Whether values under ``key`` are masked."""
        normalised = _normalise(key)
        return any(name in normalised for name in self._names)

    def redact(self, value: Any) -> Any:
        """``value`` with secrets masked; the same object when nothing changed."""
        return self._redact(value, 0, text=True)

    def redact_text(self, text: str) -> str:
        """``text`` with ``key=value`` secrets, credentials and URL passwords masked."""
        text = self._key_value.sub(_mask_value, text)
        text = _AUTH_SCHEME.sub(_mask_auth_scheme, text)
        return _URL_PASSWORD.sub(rf"\g<prefix>{REDACTED}@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's extras, arguments, message, traceback and stack."""
        if getattr(record, _MARK_ATTR, None) == self._mark:
            return True
        for key, value in record_extras(record).items():
            masked = REDACTED if self.is_sensitive(key) else self._redact(value, 0, text=True)
            if masked is not value:
                setattr(record, key, masked)
        if isinstance(record.msg, Mapping):
            record.msg = self._redact(record.msg, 0, text=True)
        else:
            if record.args:
                # Strings in arguments are covered by redacting the formatted message.
                record.args = self._redact(record.args, 0, text=False)
            self._redact_message(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact_text(record.stack_info)
        setattr(record, _MARK_ATTR, self._mark)
        return True

    def _redact_message(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return  # a broken format string is reported by the handler, args already masked
        redacted = self.redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if hasattr(record, "message"):
            record.message = redacted

    def _redact(self, value: Any, depth: int, *, text: bool) -> Any:
        if isinstance(value, SecretStr | SecretBytes):
            return REDACTED
        if isinstance(value, str):
            return self.redact_text(value) if text else value
        if not isinstance(value, Mapping | list | tuple):
            return value
        if depth >= _MAX_DEPTH:
            return REDACTED  # fail closed: too deep (or cyclic) to inspect
        if isinstance(value, Mapping):
            return self._redact_mapping(value, depth, text=text)
        return self._redact_sequence(value, depth, text=text)

    def _redact_mapping(self, value: Mapping[Any, Any], depth: int, *, text: bool) -> Any:
        items = {
            key: REDACTED
            if isinstance(key, str) and self.is_sensitive(key)
            else self._redact(item, depth + 1, text=text)
            for key, item in value.items()
        }
        changed = any(items[key] is not item for key, item in value.items())
        return items if changed else value

    def _redact_sequence(
        self, value: list[Any] | tuple[Any, ...], depth: int, *, text: bool
    ) -> Any:
        masked = [self._redact(item, depth + 1, text=text) for item in value]
        if all(new is old for new, old in zip(masked, value, strict=True)):
            return value
        return tuple(masked) if isinstance(value, tuple) else masked


_MARK_ATTR = "_dtpyfw_redacted_by"
_MAX_DEPTH = 16
_TRACEBACK_FORMATTER = logging.Formatter()

_AUTH_SCHEME = re.compile(r"\b(?P<scheme>bearer|basic)\s+(?P<credentials>[\w\-.~+/]+=*)", re.I)
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s/@]+@", re.I)


def _normalise(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


def _mask_value(match: re.Match[str]) -> str:
    return match.group(0)[: match.start("value") - match.start(0)] + REDACTED


def _mask_auth_scheme(match: re.Match[str]) -> str:
    scheme, credentials = match.group("scheme"), match.group("credentials")
    # "Basic" is also an English word: mask only what looks like base64 credentials
    # (an upper-case letter after the first character, a digit, '+', '/' or padding).
    if scheme.lower() == "basic" and not re.search(r"[A-Z0-9+/=]", credentials[1:]):
        return match.group(0)
    return f"{scheme} {REDACTED}"
