"""Reply codes decide what a refusal means; the server's wording never does."""

from __future__ import annotations

import ftplib

import pytest

from dtpyfw.ftp import FtpAuthError, FtpConnectionError, FtpError, FtpNotFound
from dtpyfw.ftp._client import _classify, _is_refusal, _is_unsupported, _verdict
from dtpyfw.ftp._replies import reply_code, reply_kind


def refusal(reply: str) -> ftplib.Error:
    """The ftplib error for a 5xx reply (ftplib raises these; nothing is sent here)."""
    return ftplib.error_perm(reply)  # noqa: S321 - an exception object, no FTP session


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("550 Failed to change directory.", "550"),
        ("553 Could not create file.", "553"),
        ("  530 Login incorrect.", "530"),
        ("211-Features:", "211"),
        ("550", "550"),
        ("55 short", None),
        ("5500 too long", None),
        ("650 not a reply class", None),
        ("abc", None),
        ("", None),
    ],
)
def test_reply_code_is_the_leading_three_digits(reply: str, code: str | None) -> None:
    """Only a well-formed ``NNN``, ``NNN text`` or ``NNN-text`` has a code."""
    assert reply_code(reply) == code
    assert reply_code(refusal(reply)) == code


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("530", "auth"),
        ("332", "auth"),
        ("421", "connection"),
        ("425", "connection"),
        ("426", "connection"),
        ("500", "unsupported"),
        ("502", "unsupported"),
        ("504", "unsupported"),
        ("450", "refused"),
        ("550", "refused"),
        ("553", "refused"),
        ("501", "other"),
        ("552", "other"),
        ("451", "other"),
        (None, "other"),
    ],
)
def test_reply_kind_by_code(code: str | None, kind: str) -> None:
    """Each code maps to what the client does about it."""
    assert reply_kind(code) == kind


@pytest.mark.parametrize(
    "reply",
    [
        "550 No such file or directory.",  # pyftpdlib
        "550 Failed to change directory.",  # vsftpd
        "553 Could not create file.",  # vsftpd
        "450 File unavailable.",
        "550 Permission denied.",
    ],
)
def test_a_refusal_is_never_not_found_by_its_words(reply: str) -> None:
    """Whatever the text, a 450/550/553 is a refusal to probe, not an FtpNotFound verdict."""
    error = _classify(refusal(reply), "stat", "a/b", reply)
    assert type(error) is FtpError
    assert error.reply_code == reply[:3]
    assert _is_refusal(error)
    assert not _is_unsupported(error)


def test_other_codes_classify_without_a_probe() -> None:
    """530 is an auth error, 421 a connection error, 502 unsupported: none is a refusal."""
    auth = _classify(refusal("530 Login incorrect."), "connect", "", "530")
    assert isinstance(auth, FtpAuthError)
    assert auth.reply_code == "530"
    timeout = ftplib.error_temp("421 Timeout.")  # noqa: S321 - an exception object only
    closing = _classify(timeout, "list", "", "421")
    assert isinstance(closing, FtpConnectionError)
    unknown = _classify(refusal("502 Command not implemented."), "size", "x", "502")
    assert _is_unsupported(unknown)
    assert not _is_refusal(unknown)
    assert not _is_refusal(FtpNotFound("already decided", reply_code="550"))


class _FtputilVerdict(Exception):
    """Stands in for an ftputil error: its ``errno`` is the code ftputil chose."""

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.errno = errno


def test_ftputil_verdicts_are_read_by_their_code() -> None:
    """ftputil's own 550 ("not in the listing") is FtpNotFound; its other verdicts are not."""
    missing = _verdict(_FtputilVerdict("550 /r/x: no such file or directory", 550), "stat", "x")
    assert isinstance(missing, FtpNotFound)
    worded = _verdict(_FtputilVerdict("no such thing, but no code", None), "rmtree", "x")
    assert type(worded) is FtpError
    not_empty = _verdict(_FtputilVerdict("directory '/r/x' not empty", None), "rmtree", "x")
    assert type(not_empty) is FtpError


def test_ftp_error_keeps_its_reply_code() -> None:
    """FtpError and its subclasses carry the reply code; None when no reply caused them."""
    assert FtpError("x").reply_code is None
    assert FtpNotFound("x", reply_code="550").reply_code == "550"
    assert str(FtpError("message", reply_code="553")) == "message"
