"""configure_logging: output formats, idempotency, levels, files and uvicorn."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import logging.handlers
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dtpyfw.core.context import bind_context
from dtpyfw.core.errors import ConfigError
from dtpyfw.log import (
    ContextFilter,
    FileLogSettings,
    LogSettings,
    RedactingFilter,
    configure_logging,
    reset_logging,
    uvicorn_log_config,
)

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    reset_logging()


def _json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _dtpyfw_handlers() -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactingFilter) for f in h.filters)
    ]


def test_json_line_has_the_documented_keys_and_context(capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON line has the fixed keys in order, the bound context and the extras."""
    configure_logging(LogSettings(format="json"), service="orders", version="1.4.0")
    with bind_context(request_id="req-1", correlation_id="cor-1", trace_id="t" * 32, span_id="s1"):
        logging.getLogger("orders.api").info("order %s placed", 42, extra={"order_id": 42})

    [line] = _json_lines(capsys.readouterr().out)
    assert list(line)[:10] == [
        "timestamp",
        "level",
        "logger",
        "message",
        "request_id",
        "correlation_id",
        "trace_id",
        "span_id",
        "service",
        "version",
    ]
    assert line["level"] == "INFO"
    assert line["logger"] == "orders.api"
    assert line["message"] == "order 42 placed"
    assert line["request_id"] == "req-1"
    assert line["correlation_id"] == "cor-1"
    assert line["trace_id"] == "t" * 32
    assert line["span_id"] == "s1"
    assert line["service"] == "orders"
    assert line["version"] == "1.4.0"
    assert line["order_id"] == 42
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])


def test_json_context_fields_are_null_outside_a_request(capsys: pytest.CaptureFixture[str]) -> None:
    """Unset context fields are present as null so every line has one shape."""
    configure_logging(LogSettings(format="json"))
    logging.getLogger("app").warning("no request")
    [line] = _json_lines(capsys.readouterr().out)
    assert line["request_id"] is None
    assert line["trace_id"] is None
    assert line["service"] == "dtpyfw"
    assert line["version"] == "0.0.0"


def test_json_includes_the_formatted_exception(capsys: pytest.CaptureFixture[str]) -> None:
    """logger.exception adds an ``exc_info`` key holding the traceback text."""
    configure_logging(LogSettings(format="json"))
    try:
        raise ValueError("bad input")
    except ValueError:
        logging.getLogger("app").exception("failed")
    [line] = _json_lines(capsys.readouterr().out)
    assert line["level"] == "ERROR"
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad input" in line["exc_info"]


def test_console_line_is_readable_with_context_appended(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Console format prints one line: time, level, logger, message, set context and extras."""
    configure_logging(LogSettings(format="console"))
    with bind_context(request_id="req-9"):
        logging.getLogger("app.web").warning("slow %s", "query", extra={"ms": 812, "sql": "x y"})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert re.fullmatch(
        r"\S+Z WARNING  app\.web: slow query request_id=req-9 ms=812 sql=\"x y\"\n", out
    )
    assert "trace_id" not in out  # unset context fields are left out


def test_configuring_twice_replaces_handlers_instead_of_duplicating(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second configure_logging call leaves one dtpyfw handler and one output line."""
    configure_logging(LogSettings(format="json"))
    first = _dtpyfw_handlers()
    configure_logging(LogSettings(format="json"))
    second = _dtpyfw_handlers()
    assert len(first) == len(second) == 1
    assert first[0] not in logging.getLogger().handlers
    logging.getLogger("app").warning("once")
    assert len(_json_lines(capsys.readouterr().out)) == 1


def test_handlers_installed_by_other_code_are_left_alone() -> None:
    """configure_logging and reset_logging never remove a handler they did not install."""
    foreign = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        configure_logging(LogSettings())
        configure_logging(LogSettings(format="json"))
        assert foreign in root.handlers
        reset_logging()
        assert foreign in root.handlers
        assert _dtpyfw_handlers() == []
    finally:
        root.removeHandler(foreign)


def test_reset_restores_levels_and_closes_handlers(tmp_path: Path) -> None:
    """reset_logging removes and closes dtpyfw's handlers and puts levels back."""
    root = logging.getLogger()
    before = root.level
    configure_logging(
        LogSettings(level="ERROR", file=FileLogSettings(path=tmp_path / "svc.log"), stdout=False)
    )
    [handler] = _dtpyfw_handlers()
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    logging.getLogger("app").error("opened")
    reset_logging()
    assert handler not in root.handlers
    assert handler.stream is None  # closed
    assert root.level == before


def test_every_handler_gets_context_and_redacting_filters(tmp_path: Path) -> None:
    """Each installed handler carries the filters, so no destination sees raw records."""
    configure_logging(LogSettings(file=FileLogSettings(path=tmp_path / "svc.log")))
    handlers = _dtpyfw_handlers()
    assert len(handlers) == 2
    for handler in handlers:
        assert any(isinstance(f, ContextFilter) for f in handler.filters)
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)


def test_per_logger_levels_apply_and_are_undone_on_reconfigure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``loggers`` sets levels per logger; the next configuration forgets them."""
    configure_logging(
        LogSettings(format="json", loggers={"app.noisy": "ERROR", "app.chatty": "DEBUG"})
    )
    logging.getLogger("app.noisy").warning("hidden")
    logging.getLogger("app.noisy").error("shown-error")
    logging.getLogger("app.chatty").debug("shown-debug")
    logging.getLogger("app.other").debug("hidden")
    messages = [line["message"] for line in _json_lines(capsys.readouterr().out)]
    assert messages == ["shown-error", "shown-debug"]

    configure_logging(LogSettings(format="json"))
    assert logging.getLogger("app.noisy").level == logging.NOTSET
    assert logging.getLogger("app.chatty").level == logging.NOTSET


def test_rotating_file_handler_writes_and_rotates(tmp_path: Path) -> None:
    """The file destination writes JSON lines and rotates at max_bytes keeping backup_count."""
    path = tmp_path / "nested" / "svc.log"
    configure_logging(
        LogSettings(
            format="json",
            stdout=False,
            file=FileLogSettings(path=path, max_bytes=600, backup_count=2),
        )
    )
    for number in range(30):
        logging.getLogger("app").warning("line %d", number)
    reset_logging()

    assert path.exists()
    assert path.with_name("svc.log.1").exists()
    assert path.with_name("svc.log.2").exists()
    assert not path.with_name("svc.log.3").exists()
    last = [json.loads(line) for line in path.read_text().splitlines()]
    assert last[-1]["message"] == "line 29"
    assert all(p.stat().st_size <= 600 for p in tmp_path.glob("nested/svc.log*"))


def test_unopenable_log_file_is_a_config_error(tmp_path: Path) -> None:
    """A file path that cannot be opened raises ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=r"log\.file\.path"):
        configure_logging(LogSettings(file=FileLogSettings(path=tmp_path)))
    assert _dtpyfw_handlers() == []


def test_uvicorn_loggers_are_emptied_and_propagate(capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn's own handlers are removed so its records use dtpyfw's format."""
    stream = io.StringIO()
    own = logging.StreamHandler(stream)
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).addHandler(own)
        logging.getLogger(name).propagate = name == "uvicorn.error"
    try:
        configure_logging(LogSettings(format="json"))
        for name in UVICORN_LOGGERS:
            assert logging.getLogger(name).handlers == []
            assert logging.getLogger(name).propagate is True
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/health", "1.1", 200
        )
        [line] = _json_lines(capsys.readouterr().out)
        assert line["logger"] == "uvicorn.access"
        assert line["message"] == '127.0.0.1:5000 - "GET /health HTTP/1.1" 200'
        assert stream.getvalue() == ""

        reset_logging()
        assert logging.getLogger("uvicorn.access").handlers == [own]
        assert logging.getLogger("uvicorn.access").propagate is False
    finally:
        for name in UVICORN_LOGGERS:
            logging.getLogger(name).removeHandler(own)
            logging.getLogger(name).propagate = True


def test_uvicorn_log_config_keeps_dtpyfw_handlers_open(tmp_path: Path) -> None:
    """uvicorn applying uvicorn_log_config() neither closes dtpyfw's handlers nor adds its own."""
    uvicorn_config = pytest.importorskip("uvicorn.config")
    configure_logging(LogSettings(stdout=False, file=FileLogSettings(path=tmp_path / "a.log")))
    [handler] = _dtpyfw_handlers()
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    logging.getLogger("app").warning("before")
    stream = handler.stream

    uvicorn_config.Config(app="x:y", log_config=uvicorn_log_config(), use_colors=True)

    assert handler.stream is stream  # a closed FileHandler drops its stream
    assert _dtpyfw_handlers() == [handler]
    for name in UVICORN_LOGGERS:
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate is True


def test_uvicorn_log_config_is_an_incremental_dict_config() -> None:
    """The returned dict only touches uvicorn's loggers and is accepted by dictConfig."""
    config = uvicorn_log_config()
    assert config["incremental"] is True
    assert set(config["loggers"]) == set(UVICORN_LOGGERS)
    assert "handlers" not in config
    logging.config.dictConfig(uvicorn_log_config())
    assert logging.getLogger("uvicorn.access").propagate is True


def test_importing_the_package_configures_nothing() -> None:
    """``import dtpyfw.log`` leaves the root logger untouched."""
    code = (
        "import logging, dtpyfw.log\n"
        "root = logging.getLogger()\n"
        "assert root.handlers == [], root.handlers\n"
        "assert root.level == logging.WARNING, root.level\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_uvicorn_color_message_is_not_an_extra_field() -> None:
    """uvicorn's ANSI `color_message` copy never shows up as a field in our output."""
    from dtpyfw.log import capture_logs

    with capture_logs() as records:
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s", "x", extra={"color_message": "\x1b[1m%s\x1b[0m"}
        )
    assert records
    assert "color_message" not in records[-1]
