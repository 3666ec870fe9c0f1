"""What an FTP reply code says about a failed command, whatever the server's wording.

Servers word their refusals freely: pyftpdlib answers a missing file with
``550 No such file or directory.``, vsftpd with ``550 Failed to change
directory.`` or ``553 Could not create file.``, and both send the same codes
for a permission problem. So the client reads only the code (RFC 959, 3659):

* ``auth``: 530 (and 332): not logged in; retrying will not help;
* ``connection``: 421, 425, 426: the server is closing, or no data connection;
* ``unsupported``: 500, 502, 504: the command (or its parameter) is unknown;
* ``refused``: 450, 550, 553: the file is unavailable or its name not allowed.
  A missing path is one cause among others (permissions, a directory where a
  file was expected), so the client asks again before it says "not found";
* ``other``: anything else.
"""

from __future__ import annotations

__all__ = ["ReplyKind", "reply_code", "reply_kind"]

from typing import Literal

ReplyKind = Literal["auth", "connection", "unsupported", "refused", "other"]

_KINDS: dict[str, ReplyKind] = {
    "332": "auth",
    "530": "auth",
    "421": "connection",
    "425": "connection",
    "426": "connection",
    "500": "unsupported",
    "502": "unsupported",
    "504": "unsupported",
    "450": "refused",
    "550": "refused",
    "553": "refused",
}


def reply_code(reply: object) -> str | None:
    """The three-digit code a reply (or an ftplib error, whose text is the reply) starts with."""
    text = str(reply).lstrip()
    code = text[:3]
    if len(code) == 3 and code.isdigit() and code[0] in "12345" and text[3:4] in ("", " ", "-"):
        return code
    return None


def reply_kind(code: str | None) -> ReplyKind:
    """What the reply ``code`` means for the client; see the module notes."""
    if code is None:
        return "other"
    return _KINDS.get(code, "other")
