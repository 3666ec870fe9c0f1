"""fake-gcs-server, the Go GCS emulator, as a second GCS for tests (beside gcp-storage-emulator).

:func:`find_fake_gcs` searches like the other ``find_*`` functions
(:mod:`dtpyfw.testing._launchers`): ``$DTPYFW_TEST_FAKE_GCS_URL``, then
``http://127.0.0.1:4443`` (the server's default port, served over plain HTTP
with ``-scheme http``), then a local process, then a testcontainers container.

The local process is ``github.com/fsouza/fake-gcs-server`` at
:data:`FAKE_GCS_VERSION`, built once by ``go install`` into the dtpyfw cache
(:func:`~dtpyfw.testing._toolcache.go_binary`), serving an in-memory backend
on a free loopback port. It runs under :func:`~dtpyfw.testing._native.watched`,
so it dies with the test process even when that is killed.

Its pytest fixtures (``fake_gcs_service``, ``fake_gcs_url``,
``fake_gcs_bucket``) are in :mod:`dtpyfw.testing._backends`.
"""

from __future__ import annotations

__all__ = [
    "FAKE_GCS_VERSION",
    "find_fake_gcs",
]

from pathlib import Path

from dtpyfw.testing._launchers import (
    Launch,
    ServiceHandle,
    _Backend,
    _find,
    _free_port,
    _gcs_probe,
    _LaunchError,
    _Process,
    _start_container,
)
from dtpyfw.testing._native import start_native
from dtpyfw.testing._toolcache import go_binary
from dtpyfw.testing._wait import wait_until

FAKE_GCS_MODULE = "github.com/fsouza/fake-gcs-server"
FAKE_GCS_VERSION = "v1.56.1"
_IMAGE = f"fsouza/fake-gcs-server:{FAKE_GCS_VERSION.removeprefix('v')}"
_CONTAINER_PORT = 4443
_READY_TIMEOUT = 30.0


def find_fake_gcs(*, launch: Launch = "auto") -> ServiceHandle:
    """Return a fake-gcs-server for tests; its ``url`` is the JSON API endpoint (``http://``)."""
    return _find(_FAKE_GCS, launch=launch)


def _flags(bind_host: str, port: int, public: str) -> list[str]:
    # The server writes its own address into resumable-upload Locations and answers
    # path-style (signed URL) requests only for its public host: both must be the
    # address clients use, not the one it binds.
    return [
        "-scheme",
        "http",
        "-host",
        bind_host,
        "-port",
        str(port),
        "-backend",
        "memory",
        "-public-host",
        public,
        "-external-url",
        f"http://{public}",
        "-log-level",
        "warn",
    ]


def _start_fake_gcs_process() -> ServiceHandle:
    binary = str(go_binary("fake-gcs-server", FAKE_GCS_MODULE, FAKE_GCS_VERSION))

    def command(directory: Path, port: int) -> list[str]:
        return [binary, *_flags("127.0.0.1", port, f"127.0.0.1:{port}")]

    def ready(server: _Process) -> str | None:
        return _gcs_probe(f"http://127.0.0.1:{server.port}", timeout=1.0)

    server = start_native("fake-gcs-server", "dtpyfw-fake-gcs-", command, ready)
    return ServiceHandle(
        "GCS (fake-gcs-server)", f"http://127.0.0.1:{server.port}", "process", _owner=server
    )


def _start_fake_gcs_container() -> ServiceHandle:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError as exc:
        raise _LaunchError("testcontainers is not installed (pip install testcontainers)") from exc
    # A fixed host port, known before the start, because the server must be told it.
    port = _free_port()
    flags = _flags("0.0.0.0", _CONTAINER_PORT, f"127.0.0.1:{port}")  # noqa: S104 - in the container
    container = (
        DockerContainer(_IMAGE).with_bind_ports(_CONTAINER_PORT, port).with_command(" ".join(flags))
    )
    owner = _start_container(container)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _gcs_probe(url) is None, _READY_TIMEOUT, interval=0.2, what=url)
    except AssertionError as exc:
        owner.stop()
        raise _LaunchError(f"the fake-gcs-server container did not answer ({exc})") from exc
    return ServiceHandle("GCS (fake-gcs-server)", url, "testcontainers", _owner=owner)


_FAKE_GCS = _Backend(
    name="GCS (fake-gcs-server)",
    env_var="DTPYFW_TEST_FAKE_GCS_URL",
    default_port=_CONTAINER_PORT,
    default_urls=lambda port: [f"http://127.0.0.1:{port}"],
    normalize=str.strip,
    probe=_gcs_probe,
    start_process=_start_fake_gcs_process,
    start_container=_start_fake_gcs_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_FAKE_GCS_URL to a fake-gcs-server that answers "
        "(-scheme http), start one on 127.0.0.1:4443, install Go (scripts/ensure-system-deps.sh) "
        "so it can be built, or start Docker."
    ),
)
