"""Consumer processes that record what they handle in Redis, for kill-and-restart tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Each handled message increments its number's field in a Redis hash, so the test
# can count deliveries per message across processes, crashes included.
CONSUMER_SCRIPT = r"""
import json, logging, os, signal, sys, time
import redis
from dtpyfw.messaging import MessagingContainer, MessagingSettings

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
logging.getLogger("dtpyfw.messaging").setLevel(logging.INFO)
config = json.loads(sys.argv[1])
record = redis.Redis.from_url(config["record_url"])
options = {"settings": MessagingSettings.model_validate(config["messaging"])}
if config.get("redis"):
    from dtpyfw.redis import RedisSettings
    options["redis_settings"] = RedisSettings.model_validate(config["redis"])
if config.get("kafka"):
    from dtpyfw.kafka import KafkaSettings
    options["kafka_settings"] = KafkaSettings.model_validate(config["kafka"])
container = MessagingContainer(**options)
bus = container.bus()
key = config["key"]

work = config.get("work_seconds", 0)  # what a real handler spends per message

def handle(message):
    if message.data.get("die"):  # a poison message: its handler takes the process down
        record.incr(key + ":deaths")
        os.kill(os.getpid(), signal.SIGKILL)
    if work:
        time.sleep(work)
    pipe = record.pipeline(transaction=False)
    pipe.hincrby(key, message.data["n"], 1)
    pipe.hincrby(key + ":by", str(os.getpid()), 1)
    if "p" in message.data:
        pipe.sadd(f"{key}:partitions:{os.getpid()}", message.data["p"])
    pipe.execute()

bus.subscribe(config["type"], handle, group=config["group"])
runner = container.runner()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
runner.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM})
runner.stop()
container.shutdown_resources()
print("stopped", flush=True)
"""


class ConsumerProcess:
    """A consumer in its own process; ``kill()`` is a crash, ``stop()`` a graceful SIGTERM."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        self.log = log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CONSUMER_SCRIPT, json.dumps(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the 'ready' line (or fail with the process's output)."""
        wait_until(lambda: "ready" in self.output() or self.process.poll() is not None, timeout)
        assert self.process.poll() is None, self.output()

    @property
    def pid(self) -> int:
        """The process id (what it records its work under)."""
        return self.process.pid

    def assignment(self, topic: str) -> set[int]:
        """The partitions of ``topic`` that the latest 'now reads' log line names (Kafka)."""
        lines = [line for line in self.output().splitlines() if " now reads " in line]
        if not lines:
            return set()
        found = re.findall(rf"{re.escape(topic)}\[(\d+)\]", lines[-1])
        return {int(number) for number in found}

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no acknowledgement of what was in flight."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.02)
