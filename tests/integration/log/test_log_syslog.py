"""The syslog destination against a UDP socket on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
from collections.abc import Iterator

import pytest

from dtpyfw.core.errors import ConfigError
from dtpyfw.log import LogSettings, SyslogSettings, configure_logging, reset_logging


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    """A bound UDP socket standing in for a syslog daemon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    reset_logging()
    sock.close()


def test_records_reach_syslog_with_priority_ident_and_json(udp_server: socket.socket) -> None:
    """A record arrives as '<PRI>service: {json}' with the configured facility."""
    port = udp_server.getsockname()[1]
    configure_logging(
        LogSettings(
            format="json",
            stdout=False,
            syslog=SyslogSettings(address=f"127.0.0.1:{port}", facility="local0"),
        ),
        service="orders",
    )
    logging.getLogger("app").warning("to syslog", extra={"token": "t0k"})
    datagram = udp_server.recv(65536).rstrip(b"\x00")
    local0_warning = 16 * 8 + 4
    prefix = f"<{local0_warning}>orders: ".encode()
    assert datagram.startswith(prefix)
    record = json.loads(datagram[len(prefix) :])
    assert record["message"] == "to syslog"
    assert record["token"] == "**********"


def test_unreachable_tcp_syslog_is_a_config_error() -> None:
    """A TCP syslog address nobody listens on fails configuration, naming the setting."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: refused
    settings = LogSettings(syslog=SyslogSettings(address=f"127.0.0.1:{port}", protocol="tcp"))
    with pytest.raises(ConfigError, match=r"log\.syslog\.address"):
        configure_logging(settings)
    assert not any(
        isinstance(h, logging.handlers.SysLogHandler) for h in logging.getLogger().handlers
    )
