"""capture_logs: records as emitted, and nothing left behind."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from dtpyfw.core.context import bind_context
from dtpyfw.log import REDACTED, LogSettings, capture_logs, configure_logging, reset_logging


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    reset_logging()


def test_records_are_dicts_with_the_json_keys() -> None:
    """Each captured record has the JSON format's keys, context and extras."""
    with bind_context(request_id="r-1"), capture_logs() as records:
        logging.getLogger("app").info("hello %s", "ann", extra={"user_id": 7})
    [record] = records
    assert record["message"] == "hello ann"
    assert record["level"] == "INFO"
    assert record["logger"] == "app"
    assert record["request_id"] == "r-1"
    assert record["trace_id"] is None
    assert record["user_id"] == 7
    assert record["service"] == "dtpyfw"
    assert record["timestamp"].endswith("Z")


def test_records_are_redacted() -> None:
    """Captured records are what handlers would emit: secrets masked."""
    with capture_logs() as records:
        logging.getLogger("app").info("token=abc", extra={"password": "pw"})
    assert records[0]["message"] == f"token={REDACTED}"
    assert records[0]["password"] == REDACTED


def test_active_configuration_supplies_service_and_redact_keys() -> None:
    """Service, version and extra redact keys follow the configure_logging call."""
    configure_logging(
        LogSettings(stdout=False, redact_keys=["pin"]), service="orders", version="2.0"
    )
    with capture_logs() as records:
        logging.getLogger("app").warning("x", extra={"pin": "1234"})
    assert records[0]["service"] == "orders"
    assert records[0]["version"] == "2.0"
    assert records[0]["pin"] == REDACTED


def test_debug_records_are_captured_even_when_the_logger_is_quieter() -> None:
    """The capture level wins for the block, and the logger level is restored after."""
    logger = logging.getLogger("app.quiet")
    logger.setLevel(logging.ERROR)
    try:
        with capture_logs("debug") as records:
            logger.debug("seen")
        assert [r["message"] for r in records] == ["seen"]
        assert logger.level == logging.ERROR
    finally:
        logger.setLevel(logging.NOTSET)


def test_level_filters_what_is_captured() -> None:
    """Records below the capture level are not collected."""
    with capture_logs(level="WARNING") as records:
        logging.getLogger("app").info("skip")
        logging.getLogger("app").warning("keep")
    assert [r["message"] for r in records] == ["keep"]


def test_logger_narrows_capture_to_one_subtree() -> None:
    """``logger=`` collects that logger and its children only."""
    with capture_logs(logger="dtpyfw.db") as records:
        logging.getLogger("dtpyfw.db.session").info("mine")
        logging.getLogger("dtpyfw.storage").info("not mine")
    assert [r["logger"] for r in records] == ["dtpyfw.db.session"]


def test_exception_is_captured_as_text() -> None:
    """A logged exception appears under ``exc_info``."""
    with capture_logs() as records:
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("app").exception("lookup failed")
    assert "KeyError: 'k'" in records[0]["exc_info"]


def test_everything_is_restored_on_exit_even_after_an_error() -> None:
    """The handler is removed and levels are restored when the block raises."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with pytest.raises(RuntimeError), capture_logs() as records:
        raise RuntimeError
    assert root.handlers == handlers
    assert root.level == level
    logging.getLogger("app").warning("after")
    assert records == []


def test_unknown_level_name_is_a_value_error() -> None:
    """A misspelt capture level fails loudly instead of capturing nothing."""
    with pytest.raises(ValueError, match="unknown log level 'verbose'"), capture_logs("verbose"):
        pass
