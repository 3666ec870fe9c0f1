"""Start non-Python test servers (Go and Java programs) that die with the test process.

``_launchers._python`` makes Python servers watch their parent themselves; a
Go binary or a JVM cannot. :func:`watched` wraps any command line in a tiny
Python watcher instead:

* the watcher polls its parent, the test process, and ends the server once
  that parent is gone (a test run killed before its ``atexit`` hook);
* on Linux the server gets ``PR_SET_PDEATHSIG`` = SIGKILL towards the
  watcher, so even a SIGKILLed watcher (``_Process.kill()``) takes the server
  with it. The signal is tied to the watcher, not to the test process, because
  the kernel ties it to the *thread* that forked: a server started from a
  short-lived thread of the test process would otherwise die with that thread;
* SIGTERM or SIGINT to the watcher (``_Process.stop()``) is passed on to the
  server, and the watcher exits once the server has, with its exit status, so
  waiting on the watcher is waiting on the server.

:func:`start_native` starts such a server on a free port in a fresh directory,
like ``_launchers._start_process``, which it complements.
"""

from __future__ import annotations

__all__ = ["start_native", "watched"]

import os
import sys
from collections.abc import Callable
from pathlib import Path

from dtpyfw.testing._launchers import _free_port, _LaunchError, _make_temp_dir, _Process

_PORT_ATTEMPTS = 5

# Runs with -I (no site, no user paths): it imports only the standard library.
_WATCHER = """
import ctypes, os, signal, subprocess, sys, threading
parent = int(sys.argv[1])
prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only
def die_with_watcher():
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
# preexec_fn is safe here: this process has no other thread yet.
server = subprocess.Popen(sys.argv[2:], preexec_fn=die_with_watcher)
def forward(signum, frame):
    if server.poll() is None:
        server.send_signal(signum)
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
def watch():
    while server.poll() is None:
        if os.getppid() != parent:
            server.terminate()
            return
        threading.Event().wait(0.5)
threading.Thread(target=watch, daemon=True).start()
code = server.wait()
sys.exit(128 - code if code < 0 else code)
"""


def watched(*argv: str) -> list[str]:
    """``argv`` as a command line whose server ends when this process (or the watcher) does."""
    return [sys.executable, "-I", "-c", _WATCHER, str(os.getpid()), *argv]


def start_native(
    name: str,
    prefix: str,
    command: Callable[[Path, int], list[str]],
    ready: Callable[[_Process], str | None],
) -> _Process:
    """Start ``command(directory, port)``, :func:`watched`, on a free port; retry on a clash.

    Unlike ``_launchers._start_process`` the command learns its directory, so it
    can write a configuration file there first, and a clash is recognised in
    any spelling (Go says "address already in use", Java "Address already in use").
    """
    for _ in range(_PORT_ATTEMPTS):
        directory = _make_temp_dir(prefix, None)
        server = _Process(name, directory, _in(directory, command), _free_port(), ready)
        try:
            server.start()
        except _LaunchError as exc:
            server.stop()
            if "address already in use" in str(exc).lower():
                continue
            raise
        except BaseException:
            server.stop()
            raise
        return server
    raise _LaunchError(f"every one of {_PORT_ATTEMPTS} free ports was taken before use")


def _in(directory: Path, command: Callable[[Path, int], list[str]]) -> Callable[[int], list[str]]:
    """``_Process``'s command (port to argv) for ``command`` in ``directory``, watched."""
    return lambda port: watched(*command(directory, port))
