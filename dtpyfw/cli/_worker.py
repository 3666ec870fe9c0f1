"""``dtpyfw worker``: run worker processes and operate the task queues.

::

    dtpyfw worker run --config FILE --tasks my.tasks [--concurrency N] [--queues a,b]
                      [--no-scheduler] [--health-port PORT] [--id ID]
    dtpyfw worker stats --config FILE [--json]
    dtpyfw worker workers --config FILE [--json]
    dtpyfw worker dlq list --config FILE [--queue Q] [--limit N] [--json]
    dtpyfw worker dlq retry --config FILE [--queue Q] [--id ID ...]
    dtpyfw worker purge --config FILE --queue Q [--target queued|delayed|dead]

``--config`` defaults to ``$DTPYFW_CONFIG_FILE`` and the environment. Re-drive
and purge print a progress line on standard error as they go.
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import asyncio
import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO, cast

from dtpyfw.core.errors import DtpyfwError

if TYPE_CHECKING:
    from dtpyfw.config import Settings
    from dtpyfw.worker import TaskQueue, WorkerSettings

EXIT_OK, EXIT_FAILED = 0, 1
_COUNT_COLUMNS = (
    "queued",
    "delayed",
    "running",
    "succeeded",
    "failed",
    "retried",
    "dead_lettered",
    "dead",
    "cancelled",
    "redelivered",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` command and its subcommands to the ``dtpyfw`` parser."""
    worker = commands.add_parser("worker", help="run workers and operate the task queues")
    sub = worker.add_subparsers(title="worker commands")

    run = sub.add_parser("run", help="start a worker process (stops gracefully on SIGTERM)")
    _config(run)
    run.add_argument(
        "--tasks",
        action="append",
        default=[],
        metavar="MODULE",
        help="module(s) declaring the tasks, imported and wired (repeat or comma-separate)",
    )
    run.add_argument("--concurrency", type=int, default=None, help="tasks run at once")
    run.add_argument(
        "--queues", default=None, help="comma-separated queues to serve (default: settings)"
    )
    run.add_argument(
        "--no-scheduler", action="store_true", help="do not fire schedules in this process"
    )
    run.add_argument(
        "--health-port", type=int, default=None, help="serve /livez and /readyz on this port"
    )
    run.add_argument("--health-host", default="127.0.0.1", help="address for --health-port")
    run.add_argument("--id", default=None, help="worker id (default host:pid:random)")
    run.set_defaults(handler=_run)

    stats = sub.add_parser("stats", help="counts per queue and priority, and live workers")
    _config(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=_stats)

    workers = sub.add_parser("workers", help="live workers (exit 1 when there is none)")
    _config(workers)
    workers.add_argument("--json", action="store_true", help="print JSON")
    workers.set_defaults(handler=_workers)

    dlq = sub.add_parser("dlq", help="the dead-letter queue")
    dlq_sub = dlq.add_subparsers(title="dlq commands")
    listing = dlq_sub.add_parser("list", help="list dead-lettered tasks, oldest first")
    _config(listing)
    listing.add_argument("--queue", default=None, help="only this queue")
    listing.add_argument("--limit", type=int, default=100, help="at most this many")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(handler=_dlq_list)
    retry = dlq_sub.add_parser("retry", help="re-drive dead tasks to their queue as attempt 1")
    _config(retry)
    retry.add_argument("--queue", default=None, help="only this queue")
    retry.add_argument("--id", action="append", default=None, help="only this task (repeat)")
    retry.set_defaults(handler=_dlq_retry)

    purge = sub.add_parser("purge", help="delete every task of a queue in one state")
    _config(purge)
    purge.add_argument("--queue", required=True, help="the queue")
    purge.add_argument(
        "--target", choices=("queued", "delayed", "dead"), default="queued", help="which tasks"
    )
    purge.set_defaults(handler=_purge)


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        dest="file",
        type=Path,
        default=None,
        help="settings file (default: $DTPYFW_CONFIG_FILE and the environment)",
    )


#: Strategies whose tasks outlive the process, run by ``dtpyfw worker run``.
_DISTRIBUTED = ("redis", "kafka")


# -- run -----------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.cli._main import _container_class
    from dtpyfw.log import configure_logging
    from dtpyfw.worker._health import HealthServer

    settings = _settings(args)
    section = _section(args, settings)
    if section.strategy not in _DISTRIBUTED:
        raise DtpyfwError(
            f"worker.strategy is {section.strategy!r}, which runs tasks inside the process "
            "that enqueues them; set `worker: {strategy: redis}` (or kafka) to run worker "
            "processes"
        )
    configure_logging(settings.log, service=settings.service.name, version=settings.service.version)
    modules = _import_tasks(args.tasks)
    container = _container_class(args).from_settings(settings)
    if modules:
        container.wire(modules=modules)
    try:
        options: dict[str, Any] = {}
        if args.concurrency is not None:
            options["concurrency"] = args.concurrency
        if args.queues:
            options["queues"] = [q.strip() for q in args.queues.split(",") if q.strip()]
        if args.no_scheduler:
            options["scheduler"] = False
        if args.id:
            options["worker_id"] = args.id
        worker = cast(Any, container).worker.worker(**options)
        container.init_resources()
        health: list[HealthServer] = []

        def started() -> None:
            if args.health_port is not None:
                health.append(HealthServer(worker, args.health_host, args.health_port).start())
            print(f"worker {worker.id} serving {', '.join(worker.queues)}", file=out, flush=True)

        try:
            worker.run(on_started=started)
        finally:
            for server in health:
                server.stop()
    finally:
        asyncio.run(container.ashutdown_resources())
    print(f"worker {worker.id} stopped after {worker.processed} task(s)", file=out)
    return EXIT_OK


def _import_tasks(specs: list[str]) -> list[ModuleType]:
    modules = []
    for spec in specs:
        for name in (part.strip() for part in spec.split(",")):
            if not name:
                continue
            try:
                modules.append(importlib.import_module(name))
            except ImportError as exc:
                raise DtpyfwError(f"cannot import task module {name!r}: {exc}") from exc
    return modules


# -- operations -----------------------------------------------------------------------------------


def _stats(args: argparse.Namespace, out: TextIO) -> int:
    with _queue(args) as queue:
        rows = queue.stats()
        workers = queue.workers()
    if args.json:
        payload = {
            "queues": [row.as_dict() for row in rows],
            "workers": [worker.as_dict() for worker in workers],
        }
        print(json.dumps(payload), file=out)
        return EXIT_OK
    if not rows:
        print("no task was ever enqueued", file=out)
    else:
        headers = ["queue", "priority", *_COUNT_COLUMNS]
        body = [
            [row.queue, str(row.priority)] + [str(getattr(row, c)) for c in _COUNT_COLUMNS]
            for row in rows
        ]
        _table(out, headers, body)
    print(f"\n{len(workers)} live worker(s)", file=out)
    for worker in workers:
        print(f"  {_describe_worker(worker)}", file=out)
    return EXIT_OK


def _workers(args: argparse.Namespace, out: TextIO) -> int:
    with _queue(args) as queue:
        workers = queue.workers()
    if args.json:
        print(json.dumps([worker.as_dict() for worker in workers]), file=out)
    else:
        for worker in workers:
            print(_describe_worker(worker), file=out)
        if not workers:
            print("no live worker", file=out)
    return EXIT_OK if workers else EXIT_FAILED


def _dlq_list(args: argparse.Namespace, out: TextIO) -> int:
    with _queue(args) as queue:
        letters = queue.dead_letters(args.queue, limit=args.limit)
    if args.json:
        for info in letters:
            print(json.dumps(info.as_dict()), file=out)
        return EXIT_OK
    if not letters:
        print("the dead-letter queue is empty", file=out)
        return EXIT_OK
    rows = [
        [
            info.id,
            info.name,
            info.queue,
            str(info.priority),
            str(info.attempt),
            info.finished_at.isoformat(timespec="seconds") if info.finished_at else "",
            _shorten(info.error or "", 80),
        ]
        for info in letters
    ]
    _table(out, ["id", "task", "queue", "priority", "attempts", "died", "error"], rows)
    return EXIT_OK


def _dlq_retry(args: argparse.Namespace, out: TextIO) -> int:
    with _queue(args) as queue:
        moved = queue.redrive(args.queue, args.id, progress=_Progress("re-driven"))
    print(f"re-drove {moved} task(s)", file=out)
    return EXIT_OK


def _purge(args: argparse.Namespace, out: TextIO) -> int:
    with _queue(args) as queue:
        removed = queue.purge(args.queue, args.target, progress=_Progress("purged"))
    print(f"purged {removed} {args.target} task(s) from {args.queue!r}", file=out)
    return EXIT_OK


# -- helpers --------------------------------------------------------------------------------------


class _Progress:
    """``re-driven 1500/4000 (37%)`` rewritten in place on standard error."""

    def __init__(self, verb: str, stream: TextIO | None = None) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr

    def __call__(self, done: int, total: int) -> None:
        percent = f" ({done * 100 // total}%)" if total else ""
        end = "\n" if done >= total else ""
        print(f"\r{self.verb} {done}/{total}{percent}", end=end, file=self.stream, flush=True)


class _queue:  # noqa: N801 - reads as a function in `with _queue(args) as queue`
    """The TaskQueue of the settings' ``worker`` section, closed on exit."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.queue: TaskQueue | None = None

    def __enter__(self) -> TaskQueue:
        from dtpyfw.worker import KafkaBroker, RedisBroker, TaskQueue

        settings = _settings(self.args)
        section = _section(self.args, settings)
        if section.strategy not in _DISTRIBUTED:
            raise DtpyfwError(
                f"worker.strategy is {section.strategy!r}: its tasks live in the memory of "
                "the process that runs them, so there is no shared queue to inspect here"
            )
        redis = getattr(settings, "redis", None)
        broker = (
            KafkaBroker(section, redis, getattr(settings, "kafka", None))
            if section.strategy == "kafka"
            else RedisBroker(section, redis)
        )
        self.queue = TaskQueue(broker, section)
        return self.queue

    def __exit__(self, *exc: object) -> None:
        if self.queue is not None:
            self.queue.close()


def _settings(args: argparse.Namespace) -> Settings:
    from dtpyfw.cli._main import _load

    return _load(args)


def _section(args: argparse.Namespace, settings: Settings) -> WorkerSettings:
    section = getattr(settings, "worker", None)
    if section is None:
        where = args.file or "the settings"
        raise DtpyfwError(f"{where}: no `worker:` section, so there are no task queues")
    return section  # type: ignore[no-any-return]


def _describe_worker(worker: Any) -> str:
    age = (datetime.now(UTC) - worker.beat_at).total_seconds()
    return (
        f"{worker.id}  queues={','.join(worker.queues)}  "
        f"running={worker.running}/{worker.concurrency}  processed={worker.processed}  "
        f"state={worker.state}  beat {age:.1f}s ago"
    )


def _table(out: TextIO, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


def _shorten(text: str, width: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"
