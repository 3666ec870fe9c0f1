"""Thread interrupts leave no interpreter-wide state behind, so traced threads keep running."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run in a child under a tracer (as coverage or a debugger would): on CPython 3.11
# an "async exception pending" flag left up stops every traced thread at its next
# function call, which would hang this process rather than fail the test.
_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from dtpyfw.worker._limits import ThreadInterrupt

    class Stop(Exception):
        pass

    def traced_call():
        return "returned"

    def tracer(frame, event, arg):
        return tracer

    sys.settrace(tracer)
    threading.settrace(tracer)

    def run(body):
        started, got, guards = threading.Event(), [], []

        def target():
            guard = ThreadInterrupt()
            guards.append(guard)
            try:
                started.set()
                body()
                got.append("not raised")
            except Stop:
                got.append("raised")
            finally:
                guard.close()
            got.append(traced_call())

        thread = threading.Thread(target=target)
        thread.start()
        started.wait()
        assert guards[0].interrupt(Stop)
        here = traced_call()  # this thread goes on while the target has it pending
        return thread, here, got

    def spin():
        while True:
            pass

    thread, here, got = run(spin)
    thread.join()
    print("running:", here, got)

    gate, after_wait = threading.Event(), []

    def blocked():
        gate.wait()  # blocks in C: the exception waits until the call returns
        after_wait.append("ran past the wait")

    thread, here, got = run(blocked)
    gate.set()
    thread.join()
    print("blocked:", here, got, after_wait)
    print("after:", traced_call())
    """
)


def test_interrupts_leave_traced_threads_running() -> None:
    """A running and a blocked thread get their exception; no traced thread stalls."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "running: returned ['raised', 'returned']",
        "blocked: returned ['raised', 'returned'] []",
        "after: returned",
    ]
