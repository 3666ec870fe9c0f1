"""s3proxy, an S3 server that checks signatures, as a second S3 for tests (beside moto).

moto accepts any signature, so it cannot show that a tampered or expired
presigned URL is refused; s3proxy (``org.gaul:s3proxy`` at
:data:`S3PROXY_VERSION`, Java) verifies AWS SigV2 and SigV4 like AWS does.

:func:`find_s3proxy` searches like the other ``find_*`` functions
(:mod:`dtpyfw.testing._launchers`): ``$DTPYFW_TEST_S3PROXY_URL``
(``http://IDENTITY:CREDENTIAL@host:port``), then a local process, then a
testcontainers container. There is no default-port step: the credentials of a
server found there could not be known. Every candidate must also *refuse* a
request signed with a wrong secret, so a signature-blind server (moto) is
never taken for s3proxy.

The local process runs the jars :func:`~dtpyfw.testing._toolcache.maven_jars`
fetched once into the dtpyfw cache, with the in-memory ``transient`` jclouds
store and a fresh random credential, on a free loopback port, under
:func:`~dtpyfw.testing._native.watched` (it dies with the test process).

Its pytest fixtures (``s3proxy_service``, ``s3proxy_url`` with the
credentials in its user info, ``s3proxy_bucket``) are in
:mod:`dtpyfw.testing._backends`.
"""

from __future__ import annotations

__all__ = [
    "S3PROXY_VERSION",
    "find_s3proxy",
]

import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit

from dtpyfw.testing._launchers import (
    Launch,
    ServiceHandle,
    _Backend,
    _find,
    _LaunchError,
    _Process,
    _s3_probe,
    _start_container,
    s3_credentials,
)
from dtpyfw.testing._native import start_native
from dtpyfw.testing._toolcache import java_executable, maven_jars
from dtpyfw.testing._wait import wait_until

S3PROXY_VERSION = "2.6.0"
_ARTIFACT = f"org.gaul:s3proxy:{S3PROXY_VERSION}"
_IMAGE = f"andrewgaul/s3proxy:s3proxy-{S3PROXY_VERSION}"
_IDENTITY = "dtpyfw"
_CONTAINER_PORT = 80
_READY_TIMEOUT = 30.0

# Without a configuration logback logs everything at DEBUG: megabytes per test run.
_LOGBACK = """<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{30} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="OUT"/></root>
</configuration>
"""

# Quick JVM start-up: the server handles a test's worth of requests, not a day's.
_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")


def find_s3proxy(*, launch: Launch = "auto") -> ServiceHandle:
    """Return an s3proxy for tests; ``url`` is ``http://IDENTITY:CREDENTIAL@host:port``."""
    return _find(_S3PROXY, launch=launch)


def _s3proxy_probe(url: str, timeout: float = 2.0) -> str | None:
    """None when ``url`` serves S3 with its credentials and refuses a wrong secret."""
    problem = _s3_probe(url, timeout)
    if problem is not None:
        return problem
    endpoint, key, secret = s3_credentials(url)
    parts = urlsplit(endpoint)
    forged = f"{parts.scheme}://{quote(key, safe='')}:{quote(secret + 'x', safe='')}@{parts.netloc}"
    if _s3_probe(forged, timeout) is None:
        return "answered a request signed with a wrong secret: it checks no signatures"
    return None


def _properties(port: int, credential: str, bind: str = "127.0.0.1") -> str:
    return "\n".join(
        [
            f"s3proxy.endpoint=http://{bind}:{port}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={_IDENTITY}",
            f"s3proxy.credential={credential}",
            "jclouds.provider=transient",
            # The transient store needs none, but jclouds insists on both.
            "jclouds.identity=unused",
            "jclouds.credential=unused",
            "",
        ]
    )


def _url(port: int, credential: str, host: str = "127.0.0.1") -> str:
    return f"http://{_IDENTITY}:{credential}@{host}:{port}"


def _start_s3proxy_process() -> ServiceHandle:
    java = java_executable()
    if java is None:
        raise _LaunchError("java is not on PATH and $JAVA_HOME is unset, so s3proxy cannot run")
    libs = maven_jars("s3proxy", [_ARTIFACT])
    credential = secrets.token_hex(16)

    def command(directory: Path, port: int) -> list[str]:
        # The credential stays out of the command line (ps): it lives in the 0600 file.
        config = directory / "s3proxy.conf"
        config.touch(mode=0o600)
        config.write_text(_properties(port, credential))
        (directory / "logback.xml").write_text(_LOGBACK)
        return [
            java,
            *_JVM_OPTIONS,
            f"-Dlogback.configurationFile={directory / 'logback.xml'}",
            "-cp",
            f"{libs}/*",
            "org.gaul.s3proxy.Main",
            "--properties",
            str(config),
        ]

    def ready(server: _Process) -> str | None:
        return _s3proxy_probe(_url(server.port, credential), timeout=1.0)

    server = start_native("s3proxy", "dtpyfw-s3proxy-", command, ready)
    return ServiceHandle("S3 (s3proxy)", _url(server.port, credential), "process", _owner=server)


def _start_s3proxy_container() -> ServiceHandle:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError as exc:
        raise _LaunchError("testcontainers is not installed (pip install testcontainers)") from exc
    credential = secrets.token_hex(16)
    container = (
        DockerContainer(_IMAGE)
        .with_exposed_ports(_CONTAINER_PORT)
        .with_env("S3PROXY_AUTHORIZATION", "aws-v2-or-v4")
        .with_env("S3PROXY_IDENTITY", _IDENTITY)
        .with_env("S3PROXY_CREDENTIAL", credential)
        .with_env("JCLOUDS_PROVIDER", "transient")
    )
    owner = _start_container(container)
    host = container.get_container_host_ip()
    url = _url(int(container.get_exposed_port(_CONTAINER_PORT)), credential, host)
    try:
        wait_until(lambda: _s3proxy_probe(url) is None, _READY_TIMEOUT, interval=0.2, what=host)
    except AssertionError as exc:
        owner.stop()
        raise _LaunchError(f"the s3proxy container did not answer ({exc})") from exc
    return ServiceHandle("S3 (s3proxy)", url, "testcontainers", _owner=owner)


_S3PROXY = _Backend(
    name="S3 (s3proxy)",
    env_var="DTPYFW_TEST_S3PROXY_URL",
    default_port=0,
    default_urls=lambda port: [],  # its credentials could not be known: see the module notes
    normalize=str.strip,
    probe=_s3proxy_probe,
    start_process=_start_s3proxy_process,
    start_container=_start_s3proxy_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_S3PROXY_URL to an s3proxy that answers "
        "(http://IDENTITY:CREDENTIAL@host:port, with s3proxy.authorization=aws-v2-or-v4), "
        "install Java 17 and Maven (scripts/ensure-system-deps.sh) or start Docker."
    ),
)
