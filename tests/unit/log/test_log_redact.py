"""RedactingFilter: secrets are masked wherever they hide in a record."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretBytes, SecretStr

from dtpyfw.log import (
    DEFAULT_REDACT_KEYS,
    REDACTED,
    FileLogSettings,
    LogSettings,
    RedactingFilter,
    capture_logs,
    configure_logging,
    reset_logging,
)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    reset_logging()


def _record(msg: object, args: Any = (), **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def _redacted(record: logging.LogRecord, *keys: str) -> logging.LogRecord:
    assert RedactingFilter(keys).filter(record) is True
    return record


def _spellings(key: str) -> list[str]:
    snake = key.replace("-", "_")
    return [key, key.upper(), snake, snake.replace("_", "-"), snake.replace("_", "").title()]


@pytest.mark.parametrize(
    "key", sorted({spelling for key in DEFAULT_REDACT_KEYS for spelling in _spellings(key)})
)
def test_builtin_keys_are_masked_in_extra_whatever_the_spelling(key: str) -> None:
    """Every built-in key is matched ignoring case, '-' and '_'."""
    record = _redacted(_record("login", **{key: "hunter2"}))
    assert vars(record)[key] == REDACTED


@pytest.mark.parametrize("key", ["db_password", "client_secret", "X-Api-Key", "github_token"])
def test_keys_containing_a_sensitive_name_are_masked(key: str) -> None:
    """A key that contains a sensitive name (``db_password``) is masked too."""
    assert vars(_redacted(_record("x", **{key: "v"})))[key] == REDACTED


def test_ordinary_extra_fields_are_untouched() -> None:
    """Fields without a sensitive name keep their values and identity."""
    payload = {"user": "ann", "items": [1, 2]}
    record = _redacted(_record("x", user_id=7, payload=payload))
    assert vars(record)["user_id"] == 7
    assert vars(record)["payload"] is payload


def test_configured_redact_keys_are_added_to_the_builtin_list() -> None:
    """``redact_keys`` masks extra names, with the same spelling rules."""
    record = _redacted(_record("x", SSN="123-45-6789", iban="DE00", password="p"), "ssn")
    assert vars(record)["SSN"] == REDACTED
    assert vars(record)["iban"] == "DE00"
    assert vars(record)["password"] == REDACTED


def test_nested_dicts_and_lists_are_masked_without_touching_the_callers_objects() -> None:
    """Secrets deep inside dicts and lists are masked in a copy."""
    payload: dict[str, Any] = {
        "user": "ann",
        "auth": {"headers": [{"Authorization": "Bearer abc"}]},
    }
    record = _redacted(_record("x", payload=payload))
    assert vars(record)["payload"] == {
        "user": "ann",
        "auth": {"headers": [{"Authorization": REDACTED}]},
    }
    assert payload["auth"]["headers"][0]["Authorization"] == "Bearer abc"


def test_dict_argument_is_masked_before_formatting() -> None:
    """A dict passed as the %-argument is masked, so the message shows no secret."""
    record = _redacted(
        _record("login %(user)s with %(password)s", ({"user": "ann", "password": "pw"},))
    )
    assert record.getMessage() == f"login ann with {REDACTED}"


def test_dict_inside_tuple_arguments_is_masked() -> None:
    """A dict among several %-arguments is masked by key."""
    record = _redacted(_record("%s sent %s", ("ann", {"token": "abc", "n": 1})))
    assert record.getMessage() == f"ann sent {{'token': '{REDACTED}', 'n': 1}}"


@pytest.mark.parametrize("secret", [SecretStr("s3cr3t"), SecretBytes(b"s3cr3t")])
def test_secret_types_in_args_and_extra_are_masked(secret: SecretStr | SecretBytes) -> None:
    """pydantic secrets become the mask in arguments, extras and nested values."""
    record = _redacted(_record("value %s", (secret,), field=secret, nested={"k": [secret]}))
    assert record.getMessage() == f"value {REDACTED}"
    assert vars(record)["field"] == REDACTED
    assert vars(record)["nested"] == {"k": [REDACTED]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization={REDACTED}"),
        ("retrying with Bearer eyJhbGciOi.x.y now", f"retrying with Bearer {REDACTED} now"),
        ("header Basic dXNlcjpwYXNz sent", f"header Basic {REDACTED} sent"),
        ("login password=hunter2 ok", f"login password={REDACTED} ok"),
        ("GET /cb?code=1&access_token=abc&x=2", f"GET /cb?code=1&access_token={REDACTED}&x=2"),
        ('body {"token": "a b c", "n": 1}', f'body {{"token": "{REDACTED}", "n": 1}}'),
        ("cfg {'api_key': 'k1'}", f"cfg {{'api_key': '{REDACTED}'}}"),
        ("url postgres://app:pw@db:5432/x", f"url postgres://app:{REDACTED}@db:5432/x"),
        ("secret: abc", f"secret: {REDACTED}"),
    ],
)
def test_secret_fragments_in_the_message_text_are_masked(text: str, expected: str) -> None:
    """Credentials written into the message itself are masked."""
    assert _redacted(_record(text)).getMessage() == expected


@pytest.mark.parametrize(
    "text", ["basic auth is disabled", "user ann logged in", "tokens used: none", "Bearer"]
)
def test_plain_prose_is_left_alone(text: str) -> None:
    """Messages without credentials are not mangled."""
    # "tokens used: none": the key must be followed directly by ':' or '='
    assert _redacted(_record(text)).getMessage() == text


def test_message_built_from_args_is_masked() -> None:
    """A secret that only appears after %-formatting is still masked."""
    record = _redacted(_record("calling %s", ("https://api?token=abc",)))
    assert record.getMessage() == f"calling https://api?token={REDACTED}"


def test_string_extras_are_scanned_for_fragments() -> None:
    """A string extra holding a credential-bearing URL is masked."""
    record = _redacted(_record("x", dsn="redis://:pw@cache:6379/0"))
    assert vars(record)["dsn"] == f"redis://:{REDACTED}@cache:6379/0"


def test_traceback_text_is_masked() -> None:
    """Exception messages carrying secrets are masked in the formatted traceback."""
    try:
        raise RuntimeError("connect failed password=hunter2")
    except RuntimeError:
        with capture_logs() as records:
            logging.getLogger("app").exception("boom")
    assert "hunter2" not in records[0]["exc_info"]
    assert f"password={REDACTED}" in records[0]["exc_info"]


def test_too_deep_structures_are_masked_not_leaked() -> None:
    """A structure too deep (or cyclic) to inspect is replaced by the mask."""
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    record = _redacted(_record("x", data=cyclic))
    depth = 0
    node: Any = vars(record)["data"]
    while isinstance(node, dict):
        node, depth = node["self"], depth + 1
    assert node == REDACTED
    assert depth > 5


def test_filtering_twice_is_harmless() -> None:
    """A record passed through the same filter by several handlers stays masked once."""
    redactor = RedactingFilter()
    record = _record("password=%s", ("pw",), token="t")
    redactor.filter(record)
    redactor.filter(record)
    assert record.getMessage() == f"password={REDACTED}"
    assert vars(record)["token"] == REDACTED


def test_every_handler_writes_redacted_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records from any logger reach stdout and the file with secrets masked."""
    path = tmp_path / "svc.log"
    configure_logging(
        LogSettings(format="json", file=FileLogSettings(path=path), redact_keys=["pin"])
    )
    logging.getLogger("deep.child.logger").warning(
        "auth with Bearer abc123",
        extra={"password": "hunter2", "pin": "1234", "ctx": {"secret": "s"}},
    )
    reset_logging()
    for output in (capsys.readouterr().out, path.read_text()):
        [line] = [json.loads(raw) for raw in output.splitlines()]
        assert line["message"] == f"auth with Bearer {REDACTED}"
        assert line["password"] == REDACTED
        assert line["pin"] == REDACTED
        assert line["ctx"] == {"secret": REDACTED}
        for secret in ("hunter2", "abc123", "1234"):
            assert secret not in output
