"""Kafka brokers for tests, and the pytest fixtures that hand them out.

:func:`find_kafka` follows the order of :mod:`dtpyfw.testing._launchers`:

1. ``DTPYFW_TEST_KAFKA_URL`` (``host:port[,host:port]``, optionally
   ``kafka://``), trusted but verified;
2. a broker already answering on 127.0.0.1:9092;
3. **Apache Kafka 4** (KRaft, one combined broker + controller), jars from
   Maven Central, started under Java (:mod:`dtpyfw.testing._kafka_broker`);
4. testcontainers' Kafka (Confluent Platform 8, i.e. Kafka 4, in KRaft mode),
   when a Docker engine answers.

:func:`start_kafka_mock` starts **librdkafka's mock cluster** instead, for
fast tests that need no broker semantics: a child process hosts an
in-memory 3-broker cluster from the ``confluent-kafka`` wheel (a dev
dependency). It speaks the modern protocol but has no CreateTopics API and
garbles some group requests of kafka-python; :func:`create_topic` makes a
topic through the mock's own API there.

The pytest fixtures that hand these out (``kafka_service``,
``kafka_bootstrap``, ``kafka_test_settings``, ``kafka_broker``) are in
:mod:`dtpyfw.testing._backends`, loaded by the plugin.
"""

from __future__ import annotations

__all__ = [
    "bootstrap_of",
    "create_topic",
    "find_kafka",
    "start_kafka_mock",
]

import contextlib
import importlib
import select
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from dtpyfw.testing._kafka_broker import start_kafka_broker
from dtpyfw.testing._launchers import (
    BackendUnavailable,
    Launch,
    ServiceHandle,
    _Backend,
    _find,
    _Launched,
    _LaunchError,
    _one_line,
    _start_container,
    _tail,
    _testcontainers_class,
)

_MOCK_READY_TIMEOUT = 30.0


# --- finding a broker ----------------------------------------------------------------------------


def find_kafka(*, launch: Launch = "auto") -> ServiceHandle:
    """A Kafka (-protocol) broker for tests; its ``url`` is ``kafka://host:port[,host:port]``."""
    return _find(_KAFKA, launch=launch)


def bootstrap_of(handle: ServiceHandle) -> str:
    """``host:port[,host:port]`` of a handle from :func:`find_kafka`."""
    return handle.url.removeprefix("kafka://")


def create_topic(handle: ServiceHandle, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions on the broker of ``handle``.

    The mock cluster does it through its own API; other brokers through the
    admin API (a broker without one raises :class:`BackendUnavailable`).
    """
    owner = handle._owner
    if isinstance(owner, _MockCluster):
        owner.create_topic(topic, partitions)
        return
    from dtpyfw.kafka import KafkaSettings, create_topics

    created = create_topics(
        KafkaSettings(bootstrap_servers=bootstrap_of(handle).split(",")),
        [topic],
        partitions=partitions,
    )
    if created is None:
        raise BackendUnavailable(
            "Kafka", [f"{handle.url}: no CreateTopics API"], "use a broker with an admin API"
        )


def _normalize(url: str) -> str:
    return "kafka://" + url.strip().removeprefix("kafka://")


def _default_urls(port: int) -> list[str]:
    return [f"kafka://127.0.0.1:{port}"]


def _probe(url: str, *, api_version: tuple[int, ...] | None = None) -> str | None:
    """None when a broker at ``url`` answers, else why not."""
    servers = url.removeprefix("kafka://").split(",")
    host, _, port = servers[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
            pass
    except (OSError, ValueError) as exc:
        return _one_line(exc)
    try:
        kafka = importlib.import_module("kafka")
    except ImportError:
        return "kafka-python is not installed (pip install 'dtpyfw[kafka]')"
    options: dict[str, Any] = {"bootstrap_servers": servers, "request_timeout_ms": 5000}
    if api_version is not None:
        options["api_version"] = api_version
    try:
        client = kafka.KafkaClient(**options)
    except Exception as exc:
        return _one_line(exc)
    try:
        client.check_version(timeout=5)
    except Exception as exc:
        return _one_line(exc)
    finally:
        client.close()
    return None


# --- librdkafka's mock cluster -------------------------------------------------------------------

# Runs in the child: no dtpyfw import, so it starts in a fraction of a second.
_MOCK_SCRIPT = r"""
import ctypes, glob, os, sys

def library():
    import confluent_kafka
    base = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    for pattern in ("confluent_kafka.libs/librdkafka*", "confluent_kafka/.dylibs/librdkafka*"):
        found = sorted(glob.glob(os.path.join(base, pattern)))
        if found:
            return found[0]
    return None

brokers = int(sys.argv[1])
path = library()
if path is None:
    # No bundled library to drive directly: let confluent-kafka create the cluster
    # (the group join delay stays at librdkafka's default, 3 s; no create_topic).
    import confluent_kafka
    producer = confluent_kafka.Producer(
        {"test.mock.num.brokers": brokers, "bootstrap.servers": "", "log_level": 0}
    )
    metadata = producer.list_topics(timeout=10)
    print("BOOTSTRAP " + ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values()))
    sys.stdout.flush()
    for line in sys.stdin:
        print("error no mock API", flush=True)
    sys.exit(0)
rd = ctypes.CDLL(path)
void_p, char_p = ctypes.c_void_p, ctypes.c_char_p
rd.rd_kafka_conf_new.restype = void_p
rd.rd_kafka_conf_set.argtypes = [void_p, char_p, char_p, char_p, ctypes.c_size_t]
rd.rd_kafka_new.restype = void_p
rd.rd_kafka_new.argtypes = [ctypes.c_int, void_p, char_p, ctypes.c_size_t]
rd.rd_kafka_mock_cluster_new.restype = void_p
rd.rd_kafka_mock_cluster_new.argtypes = [void_p, ctypes.c_int]
rd.rd_kafka_mock_cluster_bootstraps.restype = char_p
rd.rd_kafka_mock_cluster_bootstraps.argtypes = [void_p]
rd.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [void_p, ctypes.c_int32]
rd.rd_kafka_mock_topic_create.restype = ctypes.c_int
rd.rd_kafka_mock_topic_create.argtypes = [void_p, char_p, ctypes.c_int, ctypes.c_int]
errors = ctypes.create_string_buffer(512)
conf = rd.rd_kafka_conf_new()
rd.rd_kafka_conf_set(conf, b"log_level", b"0", errors, 512)
handle = rd.rd_kafka_new(0, conf, errors, 512)
if not handle:
    print("ERROR " + errors.value.decode(), flush=True)
    sys.exit(1)
cluster = rd.rd_kafka_mock_cluster_new(handle, brokers)
rd.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0)
print("BOOTSTRAP " + rd.rd_kafka_mock_cluster_bootstraps(cluster).decode())
sys.stdout.flush()
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 3 and parts[0] == "topic":
        code = rd.rd_kafka_mock_topic_create(
            cluster, parts[1].encode(), int(parts[2]), min(3, brokers)
        )
        print("ok" if code == 0 else f"error {code}", flush=True)
    else:
        print("error unknown command", flush=True)
"""


class _MockCluster(_Launched):
    """The child process hosting a mock cluster; stdin carries commands to it."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        super().__init__(log.parent)
        self.process = process
        self.log = log
        self._commands = threading.Lock()

    def create_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions (replicated up to 3 times)."""
        assert self.process.stdin is not None
        with self._commands:
            self.process.stdin.write(f"topic {topic} {partitions}\n")
            self.process.stdin.flush()
            reply = _read_line(self.process, 10.0)
        if reply != "ok":
            raise RuntimeError(f"mock cluster could not create {topic!r}: {reply}")

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_kafka_mock() -> ServiceHandle:
    """Start librdkafka's mock cluster (3 brokers); BackendUnavailable if impossible."""
    try:
        return _start_mock_cluster()
    except (_LaunchError, OSError, subprocess.SubprocessError) as exc:
        raise BackendUnavailable(
            "Kafka mock cluster", [str(exc)], "install the dev dependencies (confluent-kafka)"
        ) from None


def _start_mock_cluster() -> ServiceHandle:
    try:
        import confluent_kafka  # noqa: F401 - only checking that it is there
    except ImportError:
        raise _LaunchError(
            "confluent-kafka is not installed (it is a dev dependency: poetry install --with dev)"
        ) from None
    directory = Path(tempfile.mkdtemp(prefix="dtpyfw-kafka-mock-"))
    log = directory / "mock.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", _MOCK_SCRIPT, "3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
    cluster = _MockCluster(process, log)
    try:
        line = _read_line(process, _MOCK_READY_TIMEOUT)
        if not line.startswith("BOOTSTRAP "):
            raise _LaunchError(f"the mock cluster did not start: {line!r}; log:\n{_tail(log)}")
        url = "kafka://" + line.removeprefix("BOOTSTRAP ").strip()
        problem = _probe(url)
        if problem is not None:
            raise _LaunchError(f"the mock cluster at {url} does not answer: {problem}")
        return ServiceHandle("Kafka", url, "process", _owner=cluster)
    except BaseException:
        cluster.stop()
        raise


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line the process prints, waiting at most ``timeout`` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        return f"(nothing within {timeout:g}s)"
    line = process.stdout.readline()
    return line.strip() if line else f"(exited with {process.poll()})"


def _start_kafka_process() -> ServiceHandle:
    try:
        broker = start_kafka_broker()
    except BackendUnavailable as exc:
        raise _LaunchError("; ".join(exc.tried)) from None
    return ServiceHandle("Kafka", broker.url, "process", _owner=broker)


def _start_kafka_container() -> ServiceHandle:
    container_class = _testcontainers_class(
        "KafkaContainer", "testcontainers.community.kafka", "testcontainers.kafka"
    )
    # The same broker generation as the local launcher: Confluent Platform 8.0 is
    # Apache Kafka 4.0, in KRaft mode (testcontainers' class needs Confluent's image).
    container = container_class("confluentinc/cp-kafka:8.0.0").with_kraft()
    owner = _start_container(container)
    return ServiceHandle(
        "Kafka", _normalize(container.get_bootstrap_server()), "testcontainers", _owner=owner
    )


_KAFKA = _Backend(
    name="Kafka",
    env_var="DTPYFW_TEST_KAFKA_URL",
    default_port=9092,
    default_urls=_default_urls,
    normalize=_normalize,
    probe=_probe,
    start_process=_start_kafka_process,
    start_container=_start_kafka_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_KAFKA_URL to brokers that answer, start one on "
        "127.0.0.1:9092, install Java 17+ and Maven (scripts/ensure-system-deps.sh) so the "
        "harness can run Apache Kafka 4, or start Docker."
    ),
)
