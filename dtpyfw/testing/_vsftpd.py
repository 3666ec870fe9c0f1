"""vsftpd (Debian's FTP server) for the FTP contract tests, next to pyftpdlib.

pyftpdlib is forgiving; vsftpd words its refusals differently, offers no MLSD,
hides dot files by default and wants TLS on data connections too. Running the
same contract against both keeps :mod:`dtpyfw.ftp` honest.

:func:`start_vsftpd` runs ``vsftpd`` standalone (``listen=YES``,
``background=NO``) on a free loopback port, from a config file generated in a
private temporary directory. It logs in a *temporary system user*, created with
``useradd`` and a random password (``chpasswd``), whose home is a fresh
directory there and, chrooted, the FTP root. With ``tls`` it is FTPS: explicit
TLS is required on control and data connections, with a certificate for
``IP:127.0.0.1`` signed by a test CA made for this server alone; the URL's
``?ca_file=`` names the CA certificate. Creating users needs root: without it,
or without vsftpd, :class:`_LaunchError` says what is missing.

``stop()`` sends SIGTERM to the processes vsftpd forked per connection and to
the listener, SIGKILLs what is left, waits until none of them runs, reaps them
(adopted as their child subreaper, so no zombie is left to PID 1), then deletes
the user and the directory.

:func:`find_vsftpd` / :func:`find_vsftpds` look at ``$DTPYFW_TEST_VSFTPD_URL``
/ ``$DTPYFW_TEST_VSFTPDS_URL`` first, then launch. Their pytest fixtures live
in :mod:`dtpyfw.testing._backends`, so that importing ``dtpyfw.testing``
(which exports :func:`start_vsftpd`) keeps working without pytest.
"""

from __future__ import annotations

__all__ = [
    "find_vsftpd",
    "find_vsftpds",
    "start_vsftpd",
]

import contextlib
import ctypes
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dtpyfw.testing._certificates import write_test_ca_and_leaf
from dtpyfw.testing._launchers import (
    _LIVE,
    _LIVE_LOCK,
    _PORT_ATTEMPTS,
    Launch,
    ServiceHandle,
    _Backend,
    _find,
    _free_port,
    _ftp_normalize,
    _ftp_probe,
    _LaunchError,
    _make_temp_dir,
    _no_default_urls,
    _one_line,
    _Process,
)

_VSFTPD_CANDIDATES = ("/usr/sbin/vsftpd", "/usr/local/sbin/vsftpd")
_USER_TOOLS = ("useradd", "chpasswd", "userdel")
_USER_PREFIX = "dtpyfw-"
#: Debian's /etc/pam.d/vsftpd has pam_shells: the user's shell must be in /etc/shells.
_SHELL = "/bin/sh"
_PASV_PORT_COUNT = 32
_STOP_TIMEOUT = 10.0
#: Exit codes of useradd/userdel when /etc/passwd or /etc/group is locked by another caller.
_LOCKED_EXIT_CODES = frozenset({1, 10})
_ACCOUNT_ATTEMPTS = 5


def find_vsftpd(*, launch: Launch = "auto") -> ServiceHandle:
    """A plain-FTP vsftpd for tests: ``$DTPYFW_TEST_VSFTPD_URL``, else a launched one."""
    return _find(_VSFTPD, launch=launch)


def find_vsftpds(*, launch: Launch = "auto") -> ServiceHandle:
    """An FTPS vsftpd for tests: ``$DTPYFW_TEST_VSFTPDS_URL``, else a launched one.

    ``url`` is ``ftps://user:password@127.0.0.1:port/?ca_file=PATH``.
    """
    return _find(_VSFTPDS, launch=launch)


def start_vsftpd(*, tls: bool) -> ServiceHandle:
    """Start vsftpd with a temporary user; see the module notes. Needs root.

    The handle's ``_owner`` is a ``_Process``: ``kill()`` SIGKILLs the server
    with its connections, ``restart()`` starts it again on the same port.
    """
    executable = _vsftpd_executable()
    name = "vsftpds" if tls else "vsftpd"
    directory = _make_temp_dir(f"dtpyfw-{name}-", None)
    home = directory / "home"
    password = secrets.token_urlsafe(18)
    passive = (0, 0)  # chosen below, once the server owns the directory

    def command(port: int) -> list[str]:
        config = directory / "vsftpd.conf"
        config.write_text(_config(directory, port, passive, tls=tls))
        config.chmod(0o600)  # vsftpd insists that root owns it; nobody else needs it
        return [executable, str(config)]

    def ready(server: _Process) -> str | None:
        return _ftp_probe(_url(tls, user_name, password, server.port, directory), timeout=1.0)

    server = _Vsftpd(name, directory, command, 0, ready)  # from here on, stop() cleans up
    user_name = ""
    try:
        # Others may traverse (not list) it: vsftpd enters the home as the user before chroot.
        directory.chmod(0o711)
        home.mkdir()
        (directory / "empty").mkdir(mode=0o755)  # secure_chroot_dir: empty, not writable
        passive = _free_port_range(_PASV_PORT_COUNT)
        if tls:
            write_test_ca_and_leaf(
                directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
            )
        user_name = server.add_user(home, password)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            server.port = _free_port()
            try:
                server.start()
                break
            except _LaunchError as exc:
                if "could not bind" not in str(exc) or attempt == _PORT_ATTEMPTS:
                    raise
    except BaseException:
        server.stop()
        raise
    return ServiceHandle(
        name, _url(tls, user_name, password, server.port, directory), "process", _owner=server
    )


class _Vsftpd(_Process):
    """vsftpd, its per-connection processes and its temporary user."""

    def __init__(
        self,
        name: str,
        directory: Path,
        command: Callable[[int], list[str]],
        port: int,
        ready: Callable[[_Process], str | None],
    ) -> None:
        super().__init__(name, directory, command, port, ready)
        self.user: pwd.struct_passwd | None = None

    def add_user(self, home: Path, password: str) -> str:
        """Create the temporary user whose home (and FTP root) is ``home``; its name."""
        name = f"{_USER_PREFIX}{secrets.token_hex(4)}"
        nobody = pwd.getpwnam("nobody")
        _run_account_tool(
            [
                "useradd",
                "--system",  # no subordinate id ranges, no password aging
                "--no-user-group",
                "--gid",
                str(nobody.pw_gid),
                "--home-dir",
                str(home),
                "--no-create-home",
                "--shell",
                _SHELL,
                "--comment",
                "dtpyfw test vsftpd (temporary)",
                name,
            ]
        )
        self.user = pwd.getpwnam(name)
        # The password goes on stdin, never on a command line that ps shows.
        _run_account_tool(["chpasswd"], stdin=f"{name}:{password}\n")
        os.chown(home, self.user.pw_uid, self.user.pw_gid)
        return name

    def kill(self) -> None:
        """SIGKILL the listener and every connection's processes; wait until all are gone."""
        self._end(signal.SIGKILL)

    def _shutdown(self) -> None:
        try:
            self._end(signal.SIGTERM)
        finally:
            if self.user is not None:
                user, self.user = self.user, None
                _run_account_tool(["userdel", user.pw_name])

    def _end(self, signum: signal.Signals) -> None:
        """Signal the connection processes and the listener; wait until none runs; reap them.

        vsftpd's listener reaps its children only when its next connection
        arrives, so ending it orphans them: this process adopts them meanwhile
        (a child subreaper) and reaps them, rather than leaving zombies to a
        PID 1 that, in some containers, never reaps.
        """
        listener = self.process
        root = listener.pid if listener is not None else None
        uid = self.user.pw_uid if self.user is not None else None
        with _adopting_orphans():
            tree = _server_processes(root, uid)  # zombies too: they are to be reaped
            for pid, (_, zombie) in tree.items():
                if pid != root and not zombie:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)
            if listener is not None and listener.poll() is None:
                listener.send_signal(signum)
                try:
                    listener.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    listener.kill()
                    listener.wait()
            children = set(tree) - {root}

            def running() -> set[int]:
                # One the listener forked meanwhile shows up by its uid, once logged in.
                found = _server_processes(None, uid)
                return {pid for pid, (_, zombie) in found.items() if not zombie} | {
                    pid for pid in children if _runs(pid)
                }

            if not _wait_for(lambda: not running(), _STOP_TIMEOUT):
                for pid in running():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if not _wait_for(lambda: not running(), _STOP_TIMEOUT):
                    raise _LaunchError(f"vsftpd processes survived SIGKILL: {sorted(running())}")
            _wait_for(lambda: _reap(children), _STOP_TIMEOUT)
            # Another server's connection that ended meanwhile was adopted too.
            _reap(_adopted_zombies())


def _server_processes(root: int | None, uid: int | None) -> dict[int, tuple[int, bool]]:
    """``{pid: (parent pid, zombie)}`` of ``root``, its descendants and ``uid``'s processes.

    By descent, not by process group: vsftpd makes each connection a session
    of its own.
    """
    table: dict[int, tuple[int, int, bool]] = {}  # pid -> (parent pid, owner uid, zombie)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            owner = entry.stat().st_uid
        except OSError:  # it exited while we looked
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        table[int(entry.name)] = (int(ppid), owner, state in ("Z", "X"))
    found = {
        pid: (parent, zombie)
        for pid, (parent, owner, zombie) in table.items()
        if pid == root or (uid is not None and owner == uid)
    }
    grew = True
    while grew:  # add the children of what was found until nothing new turns up
        grew = False
        for pid, (parent, _, zombie) in table.items():
            if parent in found and pid not in found:
                found[pid] = (parent, zombie)
                grew = True
    return found


def _runs(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _reap(pids: set[int]) -> bool:
    """Reap those of ``pids`` that are this process's dead children; True when none is left.

    Only these pids: ``waitpid(-1)`` would steal the exit status of other
    ``subprocess.Popen`` children.
    """
    for pid in list(pids):
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours: its own parent reaped it
            pids.discard(pid)
            continue
        if reaped:
            pids.discard(pid)
    return not pids


def _adopted_zombies() -> set[int]:
    """Dead vsftpd processes this process adopted, except the listeners it started itself.

    A listener's exit status belongs to its ``Popen``, which reaps it.
    """
    with _LIVE_LOCK:
        listeners = {
            launched.process.pid
            for launched in _LIVE
            if isinstance(launched, _Process) and launched.process is not None
        }
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in listeners:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        state, ppid = rest.split()[:2]
        if name == "vsftpd" and state == "Z" and int(ppid) == os.getpid():
            found.add(int(entry.name))
    return found


_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_SUBREAPER_LOCK = threading.Lock()


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[None]:
    """Make this process the child subreaper of its descendants while the block runs.

    Linux only (prctl); elsewhere, or when refused, the block runs without it.
    The lock keeps one stopping server from ending another's adoption early.
    """
    with _SUBREAPER_LOCK:
        libc = ctypes.CDLL(None, use_errno=True)
        was = ctypes.c_int(0)
        adopting = (
            libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0) == 0
            and libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        )
        try:
            yield
        finally:
            if adopting and not was.value:
                libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """True as soon as ``condition()`` is; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        # Grandchildren are not ours to wait on, and waitpid would block: poll.
        threading.Event().wait(0.01)
    return True


def _run_account_tool(argv: list[str], *, stdin: str | None = None) -> None:
    """Run useradd/chpasswd/userdel, retrying while another caller holds the passwd lock."""
    for attempt in range(1, _ACCOUNT_ATTEMPTS + 1):
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
        if result.returncode == 0:
            return
        if result.returncode not in _LOCKED_EXIT_CODES or attempt == _ACCOUNT_ATTEMPTS:
            raise _LaunchError(
                f"{argv[0]} failed ({result.returncode}): {_one_line(result.stderr)}"
            )
        threading.Event().wait(0.1 * attempt)  # another useradd/userdel holds the lock


def _vsftpd_executable() -> str:
    """vsftpd's path, after checking everything else a launch needs; else _LaunchError."""
    executable = shutil.which("vsftpd") or next(
        (path for path in _VSFTPD_CANDIDATES if os.access(path, os.X_OK)), None
    )
    if executable is None:
        raise _LaunchError("vsftpd is not installed (apt-get install vsftpd)")
    if os.geteuid() != 0:
        raise _LaunchError("launching vsftpd needs root (it creates a temporary system user)")
    missing = [tool for tool in _USER_TOOLS if shutil.which(tool) is None]
    if missing:
        raise _LaunchError(f"{', '.join(missing)} not found on PATH (package passwd)")
    return executable


def _free_port_range(count: int) -> tuple[int, int]:
    """``count`` consecutive loopback ports free now, below the ephemeral range.

    Below it, so outgoing connections (which take ephemeral ports) do not
    collide with vsftpd's passive ports.
    """
    low = _ephemeral_low()
    for _ in range(50):
        first = random.randint(10_000, low - count - 1)  # noqa: S311 - not a secret
        if all(_bindable(port) for port in range(first, first + count)):
            return first, first + count - 1
    raise _LaunchError(f"found no {count} free consecutive loopback ports for passive mode")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _config(directory: Path, port: int, passive: tuple[int, int], *, tls: bool) -> str:
    settings: dict[str, Any] = {
        "listen": True,
        "listen_ipv6": False,
        "background": False,
        "listen_address": "127.0.0.1",
        "listen_port": port,
        "anonymous_enable": False,
        "local_enable": True,
        "write_enable": True,
        "local_umask": "022",
        "chroot_local_user": True,  # the home is the FTP root, as pyftpdlib's root is
        "allow_writeable_chroot": True,
        "secure_chroot_dir": directory / "empty",
        "pam_service_name": "vsftpd",
        "userlist_enable": False,
        "pasv_enable": True,
        "pasv_address": "127.0.0.1",
        "pasv_min_port": passive[0],
        "pasv_max_port": passive[1],
        "connect_from_port_20": False,
        # Dot files (the client's temp uploads) are listed, so tests can see none is left.
        "force_dot_files": True,
        "use_localtime": False,  # listings and MDTM in UTC
        "delay_failed_login": 0,  # a wrong password answers at once: tests wait less
        "seccomp_sandbox": False,  # containers often forbid the syscalls its filter needs
        # One plain fork per connection (no new PID namespace): stop() sees and signals it.
        "isolate": False,
        "isolate_network": False,
        "ftpd_banner": "dtpyfw test vsftpd ready.",
        "xferlog_enable": True,
        "xferlog_std_format": False,
        "log_ftp_protocol": True,
        "vsftpd_log_file": directory / "vsftpd-protocol.log",
        "syslog_enable": False,
    }
    if tls:
        settings |= {
            "ssl_enable": True,
            "rsa_cert_file": directory / "cert.pem",
            "rsa_private_key_file": directory / "key.pem",
            "allow_anon_ssl": False,
            "force_local_logins_ssl": True,
            "force_local_data_ssl": True,
            "ssl_tlsv1": True,
            "ssl_sslv2": False,
            "ssl_sslv3": False,
            "ssl_ciphers": "HIGH",  # 3.0.3's default (DES-CBC3-SHA) is gone from OpenSSL 3
            # ftplib's own data connections do not resume the control's TLS session.
            "require_ssl_reuse": False,
        }
    lines = [f"{key}={_config_value(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _config_value(value: object) -> str:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return str(value)


def _url(tls: bool, user: str, password: str, port: int, directory: Path) -> str:
    if not tls:
        return f"ftp://{user}:{password}@127.0.0.1:{port}/"
    ca_file = quote(str(directory / "ca.pem"), safe="/")
    return f"ftps://{user}:{password}@127.0.0.1:{port}/?ca_file={ca_file}"


def _start_vsftpd_container() -> ServiceHandle:
    raise _LaunchError("no container for vsftpd: its passive ports cannot be mapped")


@dataclass(frozen=True)
class _Hint:
    env_var: str
    example: str

    def text(self) -> str:
        return (
            f"Fix one of them: set ${self.env_var} ({self.example}) or, as root, install "
            "vsftpd (scripts/ensure-system-deps.sh)."
        )


_VSFTPD_HINT = _Hint("DTPYFW_TEST_VSFTPD_URL", "ftp://user:password@host:port/")
_VSFTPDS_HINT = _Hint("DTPYFW_TEST_VSFTPDS_URL", "ftps://user:password@host:port/?ca_file=PATH")

_VSFTPD = _Backend(
    name="vsftpd",
    env_var=_VSFTPD_HINT.env_var,
    default_port=0,
    default_urls=_no_default_urls,
    normalize=_ftp_normalize,
    probe=_ftp_probe,
    start_process=lambda: start_vsftpd(tls=False),
    start_container=_start_vsftpd_container,
    hint=_VSFTPD_HINT.text(),
)

_VSFTPDS = _Backend(
    name="vsftpd FTPS",
    env_var=_VSFTPDS_HINT.env_var,
    default_port=0,
    default_urls=_no_default_urls,
    normalize=_ftp_normalize,
    probe=_ftp_probe,
    start_process=lambda: start_vsftpd(tls=True),
    start_container=_start_vsftpd_container,
    hint=_VSFTPDS_HINT.text(),
)
