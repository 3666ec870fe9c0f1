"""Background tasks: dtpyfw's redis and kafka strategies against rq, in one run.

Cases (20,000 no-op tasks each):

- **enqueue**: one ``enqueue`` call per task from one producer, tasks/s;
- **end-to-end, N processes**: tasks queued first, then N worker processes
  started; the rate is tasks / (last task finished - first task started),
  read from the task records, so process start-up is not counted;
- **enqueue-to-start latency**: with one idle worker process already
  running, 2,000 tasks enqueued at a steady 500/s; p50 and p99 of
  (started - enqueued) from the task records.

The peer is rq (``rq.SimpleWorker``, which runs jobs in the worker process
like ours instead of forking per job), installed only with the ``bench``
dependency group. Our workers run as ``dtpyfw worker run`` processes with
the default 4 slots each.

The kafka strategy (records on an Apache Kafka 4 broker the harness starts,
``worker.partitions`` partitions per band topic; state on the same Redis)
runs the enqueue, 4-process and p50 cases too, compared with the same rq
figures.

Run: ``.venv/bin/python benchmarks/bench_worker.py`` (``make bench`` runs it).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Result, report

from dtpyfw.testing import KAFKA_VERSION
from dtpyfw.worker import TaskQueue, task

TASKS = 20_000
LATENCY_TASKS = 2_000
LATENCY_RATE = 100.0
PROCESSES = (1, 4)
DATABASE = 12
QUEUE = "bench"
HERE = Path(__file__).resolve().parent
JOB = "bench_worker.noop"  # rq imports it by this path


def noop() -> None:
    """The job both run: nothing."""


if __name__ != "__main__":
    # Imported by name (``bench_worker``): by our worker processes (--tasks) and by rq's,
    # and by main() below, so that both queues name an importable function.
    bench_noop = task(name="bench.noop")(noop)


# -- the peer -------------------------------------------------------------------------------------


def require_rq() -> ModuleType:
    """rq, or a clear message naming how to get it."""
    try:
        return importlib.import_module("rq")
    except ImportError:
        sys.exit(
            "bench_worker: the peer queue `rq` is not installed. It comes with the `bench` "
            "dependency group: `poetry install --with bench` (or `pip install rq`)."
        )


def rq_worker_main(url: str, burst: bool) -> None:
    """Run one rq SimpleWorker (this file re-runs itself as that process)."""
    import redis
    from rq import Queue, SimpleWorker

    connection = redis.Redis.from_url(url)
    worker = SimpleWorker([Queue(QUEUE, connection=connection)], connection=connection)
    worker.work(burst=burst, logging_level="WARNING")


# -- helpers --------------------------------------------------------------------------------------


def with_database(url: str, number: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


def flush(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    # Their output goes to our stderr: a pipe nobody reads would fill and block them.
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=None)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_worker: timed out waiting for {what}")
        time.sleep(0.02)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# -- dtpyfw ---------------------------------------------------------------------------------------


class Ours:
    """dtpyfw's redis (or kafka) strategy: a TaskQueue and `dtpyfw worker run` processes."""

    def __init__(self, url: str, directory: Path, kafka: str | None = None) -> None:
        self.url = url
        self.kafka = kafka
        self.config = directory / f"config-{'kafka' if kafka else 'redis'}.yaml"
        self.cases = 0
        self.queue = self._fresh()

    def _reset(self) -> None:
        flush(self.url)
        if self.kafka is not None:
            self.queue.close()
            self.queue = self._fresh()

    def _fresh(self) -> TaskQueue:
        """A new queue, in a new namespace: Kafka keeps the topics of earlier cases."""
        from dtpyfw.config import load_settings
        from dtpyfw.container import ServiceContainer
        from dtpyfw.worker import TaskQueue

        self.cases += 1
        kafka = ""
        if self.kafka is not None:
            kafka = f"kafka: {self.kafka}\n"
        self.config.write_text(
            f"redis:\n  url: {self.url}\n"
            f"{kafka}"
            "worker:\n"
            f"  strategy: {'kafka' if self.kafka else 'redis'}\n"
            f"  namespace: bench{self.cases}\n"
            f"  queues: [{QUEUE}]\n"
            "  result_ttl: 3600\n"
            "log:\n  level: ERROR\n"
        )
        settings = load_settings(self.config, env={}, env_file=None)
        assert settings.worker is not None
        broker = ServiceContainer.from_settings(settings).worker.broker()
        return TaskQueue(broker, settings.worker)

    def enqueue(self, count: int) -> float:
        self._reset()
        started = time.perf_counter()
        for _ in range(count):
            self.queue.enqueue("bench.noop", queue=QUEUE)
        return count / (time.perf_counter() - started)

    def preload(self, count: int) -> None:
        self._reset()
        self.queue.enqueue_many("bench.noop", [()] * count, queue=QUEUE)

    def workers(self, count: int) -> list[subprocess.Popen[bytes]]:
        command = [sys.executable, "-m", "dtpyfw.cli", "worker", "run", "--config"]
        return [
            spawn([*command, str(self.config), "--tasks", "bench_worker", "--no-scheduler"])
            for _ in range(count)
        ]

    def succeeded(self) -> int:
        return sum(row.succeeded for row in self.queue.stats())

    def drain(self, processes: int) -> float:
        self.preload(TASKS)
        workers = self.workers(processes)
        try:
            wait_until(lambda: self.succeeded() >= TASKS, 600, "dtpyfw workers")
        finally:
            stop(workers)
        times = self.times()
        first = min(started for _enqueued, started, _finished in times)
        last = max(finished for _enqueued, _started, finished in times)
        return TASKS / (last - first)

    def latency(self) -> list[float]:
        self._reset()
        workers = self.workers(1)
        try:
            wait_until(lambda: len(self.queue.workers()) == 1, 60, "a dtpyfw worker")
            paced(lambda: self.queue.enqueue("bench.noop", queue=QUEUE))
            wait_until(lambda: self.succeeded() >= LATENCY_TASKS, 120, "dtpyfw latency tasks")
        finally:
            stop(workers)
        return [(started - enqueued) * 1000 for enqueued, started, _finished in self.times()]

    def times(self) -> list[tuple[float, float, float]]:
        """(enqueued, started, finished) in epoch seconds of every task record."""
        import redis

        prefix = self.queue.broker.prefix  # type: ignore[attr-defined]
        with redis.Redis.from_url(self.url) as client:
            keys = list(client.scan_iter(f"{prefix}job:*", count=5000))
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, ["enq", "started", "finished"])
            return [(float(a), float(b), float(c)) for a, b, c in pipe.execute()]

    def close(self) -> None:
        self.queue.close()


# -- rq -------------------------------------------------------------------------------------------


class Peer:
    """rq: a Queue and SimpleWorker processes."""

    def __init__(self, url: str) -> None:
        import redis
        from rq import Queue

        self.url = url
        self.connection = redis.Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.connection)

    def enqueue(self, count: int) -> float:
        flush(self.url)
        started = time.perf_counter()
        for _ in range(count):
            self.queue.enqueue(JOB)
        return count / (time.perf_counter() - started)

    def preload(self, count: int) -> None:
        from rq import Queue

        flush(self.url)
        for start in range(0, count, 1000):
            jobs = [Queue.prepare_data(JOB) for _ in range(min(1000, count - start))]
            self.queue.enqueue_many(jobs)

    def workers(self, count: int, burst: bool) -> list[subprocess.Popen[bytes]]:
        command = [sys.executable, str(Path(__file__).resolve()), "--rq-worker", self.url]
        return [spawn([*command, "burst" if burst else "serve"]) for _ in range(count)]

    def drain(self, processes: int) -> float:
        self.preload(TASKS)
        workers = self.workers(processes, burst=True)
        try:
            for process in workers:
                process.wait(timeout=900)
        finally:
            stop(workers)
        if any(process.returncode for process in workers):
            raise SystemExit(f"bench_worker: an rq worker exited with {workers[0].returncode}")
        times = self.times()
        if len(times) != TASKS:
            raise SystemExit(f"bench_worker: rq finished {len(times)} of {TASKS} jobs")
        first = min(started for _enqueued, started, _ended in times)
        last = max(ended for _enqueued, _started, ended in times)
        return TASKS / (last - first)

    def latency(self) -> list[float]:
        from rq import Worker

        flush(self.url)
        workers = self.workers(1, burst=False)
        try:
            wait_until(lambda: len(Worker.all(connection=self.connection)) == 1, 60, "rq worker")
            paced(lambda: self.queue.enqueue(JOB))
            wait_until(lambda: len(self.times()) >= LATENCY_TASKS, 120, "rq latency jobs")
        finally:
            stop(workers)
        return [(started - enqueued) * 1000 for enqueued, started, _ended in self.times()]

    def times(self) -> list[tuple[float, float, float]]:
        """(enqueued, started, ended) in epoch seconds of every finished job."""
        keys = list(self.connection.scan_iter("rq:job:*", count=5000))
        pipe = self.connection.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, ["enqueued_at", "started_at", "ended_at"])
        out = []
        for values in pipe.execute():
            if all(values):
                out.append(tuple(_rq_time(v) for v in values))
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.connection.close()


def _rq_time(value: bytes) -> float:
    text = value.decode().replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def paced(enqueue: Callable[[], object]) -> None:
    """LATENCY_TASKS calls at LATENCY_RATE per second, on a fixed timetable."""
    started = time.perf_counter()
    for number in range(LATENCY_TASKS):
        due = started + number / LATENCY_RATE
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        enqueue()


# -- the run --------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    from dtpyfw.testing import find_redis

    with find_redis() as handle:
        yield with_database(handle.url, DATABASE)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """A fresh Apache Kafka 4 broker (its ``kafka`` section as YAML flow text).

    Not librdkafka's mock cluster: its group coordinator answers kafka-python's
    SyncGroup with INVALID_REQUEST for some members, so several worker
    processes rebalance over and over, which would measure the mock.
    """
    from dtpyfw.testing import start_kafka_broker

    broker = start_kafka_broker()
    try:
        yield json.dumps(broker.kafka_settings())
    finally:
        broker.stop()


def main() -> None:
    rq = require_rq()
    importlib.import_module("bench_worker")  # registers bench.noop under its real name
    results: list[Result] = []
    notes: list[str] = []
    with redis_url() as url, tempfile.TemporaryDirectory() as directory:
        ours, peer = Ours(url, Path(directory)), Peer(url)
        try:
            results.append(
                Result.rate("enqueue vs rq", ours.enqueue(TASKS), peer.enqueue(TASKS), "tasks/s")
            )
            for processes in PROCESSES:
                label = f"end-to-end, {processes} process{'es' if processes > 1 else ''} vs rq"
                results.append(
                    Result.rate(label, ours.drain(processes), peer.drain(processes), "tasks/s")
                )
            ours_latency, peer_latency = ours.latency(), peer.latency()
            for name, fraction in (("p50", 0.5), ("p99", 0.99)):
                results.append(
                    Result.duration(
                        f"enqueue-to-start {name} vs rq",
                        percentile(ours_latency, fraction),
                        percentile(peer_latency, fraction),
                        "ms",
                    )
                )
            # The kafka strategy on the same workload, against the rq figures above.
            peer_rates = {r.case: r.baseline for r in results}
            with kafka_broker() as section:
                kafka = Ours(url, Path(directory), kafka=section)
                try:
                    results.append(
                        Result.rate(
                            "enqueue (kafka strategy) vs rq",
                            kafka.enqueue(TASKS),
                            peer_rates["enqueue vs rq"],
                            "tasks/s",
                        )
                    )
                    results.append(
                        Result.rate(
                            "end-to-end, 4 processes (kafka strategy) vs rq",
                            kafka.drain(4),
                            peer_rates["end-to-end, 4 processes vs rq"],
                            "tasks/s",
                        )
                    )
                    kafka_latency = kafka.latency()
                    results.append(
                        Result.duration(
                            "enqueue-to-start p50 (kafka strategy) vs rq",
                            percentile(kafka_latency, 0.5),
                            percentile(peer_latency, 0.5),
                            "ms",
                        )
                    )
                finally:
                    kafka.close()
            notes += [
                f"{TASKS:,} no-op tasks per case; rq {rq.__version__} SimpleWorker; ours: "
                "`dtpyfw worker run`, 4 slots per process; Redis db "
                f"{DATABASE} at {urlsplit(url).netloc}",
                f"latency: {LATENCY_TASKS:,} tasks at {LATENCY_RATE:.0f}/s to one idle worker; "
                f"mean ours {statistics.fmean(ours_latency):.1f} ms, "
                f"rq {statistics.fmean(peer_latency):.1f} ms",
                f"kafka strategy: records on Apache Kafka {KAFKA_VERSION} (KRaft, one node, "
                "started by dtpyfw.testing)",
            ]
        finally:
            flush(url)
            ours.close()
            peer.close()
    report("worker", results, title="dtpyfw.worker (redis, kafka) vs rq", notes=notes)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rq-worker":
        rq_worker_main(sys.argv[2], burst=sys.argv[3] == "burst")
    else:
        main()
