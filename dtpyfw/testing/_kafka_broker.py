"""Apache Kafka 4 (KRaft) for tests: one combined broker + controller on loopback.

The broker's jars come from Maven Central (``org.apache.kafka:kafka_2.13`` at
:data:`KAFKA_VERSION` and what its main class needs), fetched once by
:func:`~dtpyfw.testing._toolcache.maven_jars` into ``~/.cache/dtpyfw``. A
broker runs under Java 17+ in its own directory
``<cache>/kafka/runs/<id>/`` (configuration, KRaft metadata, data, log), so
:class:`KafkaBroker` can be killed like a crash and started again on the same
ports with the same data.

No broker outlives its test run: each runs in its own process group, is
stopped by its handle or by the harness's ``atexit`` hook, and runs under a
small watcher (:func:`~dtpyfw.testing._native.watched`) that ends it when the
test process is gone. Its directory is named after the test process's pid,
so should a broker still survive, the next :func:`start_kafka_broker` on the
machine sweeps directories whose owner is gone and kills what runs there.
"""

from __future__ import annotations

__all__ = ["KAFKA_VERSION", "KafkaBroker", "dead_brokers", "start_kafka_broker"]

import base64
import contextlib
import importlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

from dtpyfw.testing._launchers import (
    _LIVE,
    _LIVE_LOCK,
    BackendUnavailable,
    _await_ready,
    _free_port,
    _Launched,
    _LaunchError,
    _one_line,
    _tail,
)
from dtpyfw.testing._native import watched
from dtpyfw.testing._toolcache import cache_root, java_executable, maven_jars

KAFKA_VERSION = "4.4.0"
_ARTIFACTS = (
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
    # Kafka logs through SLF4J 1.7; without this binding its log (our only
    # evidence when a broker fails to start) would go nowhere.
    "org.apache.logging.log4j:log4j-slf4j-impl:2.25.5",
)
_READY_TIMEOUT = 90.0  # seconds; a JVM's first start on a busy 2-core machine
_STOP_TIMEOUT = 20.0
_PORT_ATTEMPTS = 5
_HINT = (
    "install Java 17+ and Maven (scripts/ensure-system-deps.sh does), or point "
    "$DTPYFW_TEST_KAFKA_URL at a broker that answers"
)


class KafkaBroker(_Launched):
    """One Kafka 4 KRaft node (broker and controller) on loopback, data in its own directory.

    ``kill()`` ends it like a crash (SIGKILL to its process group);
    ``start()`` brings it back on the same ports with the same data;
    ``restart()`` does both. ``stop()`` shuts it down and removes the directory.
    """

    def __init__(self, libs: Path, java: str, directory: Path) -> None:
        super().__init__(directory)
        self.libs = libs
        self.java = java
        self.port = _free_port()
        self.controller_port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self.process: subprocess.Popen[bytes] | None = None
        self._formatted = False
        self._write_configs()

    def kafka_settings(self, **extra: Any) -> dict[str, Any]:
        """A ``kafka`` settings section for this broker."""
        return {"bootstrap_servers": [self.bootstrap], **extra}

    def start(self) -> None:
        """Start the node; return once its metadata lists it as a broker."""
        if not self._formatted:
            self._format()
            self._formatted = True
        with self._path("kafka.log").open("ab") as log:
            self.process = subprocess.Popen(
                watched(*self._java_command(), "kafka.Kafka", str(self._path("server.properties"))),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # its own group: a Ctrl-C must not kill it first
            )
        self._path("broker.pid").write_text(str(self.process.pid))
        _await_ready(
            self.process,
            f"Kafka {KAFKA_VERSION}",
            lambda: metadata_problem(self.bootstrap),
            _READY_TIMEOUT,
            lambda: _tail(self._path("kafka.log")),
            pause=0.2,
        )

    @property
    def alive(self) -> bool:
        """The broker process runs (it may still be starting)."""
        return self.process is not None and self.process.poll() is None

    def died(self) -> str | None:
        """Why the broker is gone, when it died on its own (None while it runs or was stopped)."""
        process = self.process
        if process is None or process.poll() is None or self.stopped:
            return None
        return (
            f"Kafka {KAFKA_VERSION} at {self.bootstrap} exited ({process.returncode}); "
            f"log:\n{_tail(self._path('kafka.log'))}"
        )

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would, and wait until it is gone."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> None:
        """Kill the broker, then start it again on the same ports with the same data."""
        self.kill()
        self.start()

    def _shutdown(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _java_command(self) -> list[str]:
        return [
            self.java,
            "-Xms128m",
            "-Xmx1g",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._path('log4j2.properties')}",
            f"-Dkafka.logs.dir={self._path('logs')}",
            "-cp",
            str(self.libs / "*"),
        ]

    def _format(self) -> None:
        """Format the KRaft metadata directory (``kafka-storage.sh format``)."""
        # A cluster id is 16 random bytes, base64url without padding (what random-uuid prints).
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        result = subprocess.run(
            [
                *self._java_command(),
                "kafka.tools.StorageTool",
                "format",
                # One argument: an id may start with "-", which would read as an option.
                f"--cluster-id={cluster_id}",
                f"--config={self._path('server.properties')}",
            ],
            capture_output=True,
            text=True,
            timeout=_READY_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise _LaunchError(
                f"kafka-storage format failed: {_one_line(result.stderr or result.stdout)}"
            )

    def _path(self, name: str) -> Path:
        assert self.directory is not None
        return self.directory / name

    def _write_configs(self) -> None:
        self._path("server.properties").write_text(
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            "controller.listener.names=CONTROLLER\n"
            "inter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={self._path('data')}\n"
            "num.partitions=4\n"
            "auto.create.topics.enable=true\n"
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor=1\n"
            "offsets.topic.num.partitions=4\n"
            "transaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\n"
            "share.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
            # Test-friendly group timings: no join delay, short sessions allowed.
            "group.initial.rebalance.delay.ms=0\n"
            "group.min.session.timeout.ms=500\n"
            "group.consumer.min.session.timeout.ms=500\n"
            "group.consumer.min.heartbeat.interval.ms=100\n"
            # A node killed and started again waits out its old registration's
            # session (9 s by default) before it serves: keep that short.
            "broker.session.timeout.ms=2000\n"
            "broker.heartbeat.interval.ms=500\n"
        )
        self._path("log4j2.properties").write_text(
            "rootLogger.level = WARN\n"
            "rootLogger.appenderRef.stdout.ref = STDOUT\n"
            "appender.stdout.type = Console\n"
            "appender.stdout.name = STDOUT\n"
            "appender.stdout.layout.type = PatternLayout\n"
            "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n"
            "logger.server.name = kafka.server.KafkaRaftServer\n"
            "logger.server.level = INFO\n"
        )


def start_kafka_broker() -> KafkaBroker:
    """Start a fresh Kafka 4 node (fetching its jars once); BackendUnavailable if impossible."""
    name = f"Kafka {KAFKA_VERSION}"
    java = java_executable()
    if java is None:
        raise BackendUnavailable(name, ["java: not found on PATH or in $JAVA_HOME/bin"], _HINT)
    try:
        libs = maven_jars("kafka", _ARTIFACTS)
    except _LaunchError as exc:
        raise BackendUnavailable(name, [str(exc)], _HINT) from None
    _sweep_stale_runs()
    problems: list[str] = []
    for _ in range(_PORT_ATTEMPTS):
        broker = KafkaBroker(libs, java, _new_run_directory())
        try:
            broker.start()
        except _LaunchError as exc:
            broker.stop()
            problems.append(str(exc))
            if "Address already in use" in str(exc):
                continue  # another process took a port between our pick and the bind
            raise BackendUnavailable(name, problems, _HINT) from None
        except BaseException:
            broker.stop()
            raise
        return broker
    raise BackendUnavailable(name, problems, _HINT)


def dead_brokers() -> list[str]:
    """Why each broker this process started and has not stopped is gone, if any died."""
    with _LIVE_LOCK:
        running = list(_LIVE)
    return [why for broker in running if isinstance(broker, KafkaBroker) and (why := broker.died())]


def metadata_problem(bootstrap: str, *, timeout_ms: int = 3000) -> str | None:
    """None when the broker at ``bootstrap`` answers a metadata request listing a broker."""
    host, _, port = bootstrap.partition(",")[0].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0).close()
    except (OSError, ValueError) as exc:
        return _one_line(exc)
    try:
        kafka = importlib.import_module("kafka")
    except ImportError:
        return "kafka-python is not installed (pip install 'dtpyfw[kafka]')"
    try:
        client = kafka.KafkaClient(
            bootstrap_servers=bootstrap.split(","), request_timeout_ms=timeout_ms
        )
    except Exception as exc:
        return _one_line(exc)
    try:
        future = client.cluster.request_update()
        client.poll(future=future, timeout_ms=timeout_ms)
        if not client.cluster.brokers():
            return "no broker in the metadata yet"
    except Exception as exc:
        return _one_line(exc)
    finally:
        client.close()
    return None


def _runs_root() -> Path:
    return cache_root() / "kafka" / "runs"


def _new_run_directory() -> Path:
    # The owner's pid is in the name, so no other process's sweep can see the
    # directory before it says whose it is.
    directory = _runs_root() / f"{os.getpid()}-{secrets.token_hex(6)}"
    directory.mkdir(parents=True)
    return directory


def _sweep_stale_runs() -> None:
    """Kill brokers whose test run died before stopping them, and remove their directories."""
    root = _runs_root()
    if not root.is_dir():
        return
    for directory in root.iterdir():
        owner, _, _ = directory.name.partition("-")
        if owner.isdigit() and _pid_alive(int(owner)):
            continue  # its test run still goes on (maybe in another process)
        broker = _read_pid(directory / "broker.pid")
        if broker is not None and _runs_in(broker, directory):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(broker, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runs_in(pid: int, directory: Path) -> bool:
    """The process ``pid`` is a broker of ``directory`` (not a later process given that pid)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(directory).encode() in command
