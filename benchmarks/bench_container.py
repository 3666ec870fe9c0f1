"""Container overhead: injected call, singleton and scoped resolve, cold start.

Run: ``.venv/bin/python benchmarks/bench_container.py``

Every case runs in this one process (cold start in fresh subprocesses started from
it), so the ratios compare like with like on the same machine at the same moment.

* injected call -- an ``@inject`` function whose default is ``Provide[C.service]``,
  ``service = Factory(Service, clock, repository, mailer)`` over three Singletons.
  Ours: a ``ServiceContainer`` subclass built by ``from_settings`` and wired into
  this module. dependency-injector by hand: a plain ``DeclarativeContainer`` with the
  same providers and DI's own ``inject``/``Provide``. Hand-written: a function that
  calls ``Service(clock, repository, mailer)`` with module-level singletons.
* singleton resolve -- ``container.clock()`` on both containers; hand-written is a
  lazily created module global behind a getter (what a Singleton does).
* scoped resolve -- open a request scope, resolve a generator-backed value, close
  the scope (the generator's ``finally`` runs). Ours: ``with container.scope():
  container.session()`` on a ``Scoped`` provider. dependency-injector: a
  ``providers.Resource`` over the same generator, ``session()`` then
  ``session.shutdown()`` -- the only DI provider that also runs the teardown
  (``ContextLocalSingleton`` would skip it and do less work). Hand-written:
  ``contextlib.ExitStack`` entering ``contextlib.contextmanager(generator)``.
* cold start -- a fresh interpreter that imports what it needs, loads settings from
  a small YAML, builds the container and wires a generated 50-module package (two
  ``@inject`` functions per module). Reported: wall time of the whole subprocess,
  spawn to exit, median of the runs. Nothing is subtracted.

Throughput is the best of ``REPEATS`` timed runs per case (cases interleaved,
garbage collector paused while timing, as ``timeit`` does) after a warm-up run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from _report import Result, format_rows, report
from dependency_injector import containers as di_containers
from dependency_injector import providers as di_providers
from dependency_injector import wiring as di_wiring

from dtpyfw.container import Provide, Scoped, ServiceContainer, inject, providers
from dtpyfw.testing import closing_container, embedded_settings

INJECT_CALLS = 200_000
RESOLVE_CALLS = 500_000
SCOPES = 50_000
REPEATS = 7
COLD_RUNS = 7
MODULES = 50

OURS = "ours"
DI = "dependency-injector by hand"
HAND = "hand-written"


# -- the object graph -----------------------------------------------------------------
class Clock:
    __slots__ = ("zone",)

    def __init__(self, zone: str) -> None:
        self.zone = zone


class Repository:
    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url


class Mailer:
    __slots__ = ("sender",)

    def __init__(self, sender: str) -> None:
        self.sender = sender


class Service:
    __slots__ = ("clock", "mailer", "repository")

    def __init__(self, clock: Clock, repository: Repository, mailer: Mailer) -> None:
        self.clock = clock
        self.repository = repository
        self.mailer = mailer


class Session:
    __slots__ = ("closed", "repository")

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.closed = False

    def close(self) -> None:
        self.closed = True


def session_scope(repository: Repository) -> Iterator[Session]:
    """One request's session, closed when the request ends."""
    session = Session(repository)
    try:
        yield session
    finally:
        session.close()


# -- ours -----------------------------------------------------------------------------
class BenchContainer(ServiceContainer):
    clock = providers.Singleton(Clock, "UTC")
    repository = providers.Singleton(Repository, "sqlite://")
    mailer = providers.Singleton(Mailer, "bench@example.com")
    service = providers.Factory(Service, clock, repository, mailer)
    session = Scoped(session_scope, repository)


@inject
def handle_ours(service: Service = Provide[BenchContainer.service]) -> Service:
    return service


# -- dependency-injector by hand ------------------------------------------------------
class DIContainer(di_containers.DeclarativeContainer):
    clock = di_providers.Singleton(Clock, "UTC")
    repository = di_providers.Singleton(Repository, "sqlite://")
    mailer = di_providers.Singleton(Mailer, "bench@example.com")
    service = di_providers.Factory(Service, clock, repository, mailer)
    session = di_providers.Resource(session_scope, repository)


@di_wiring.inject
def handle_di(service: Service = di_wiring.Provide[DIContainer.service]) -> Service:
    return service


# -- hand-written ---------------------------------------------------------------------
_CLOCK = Clock("UTC")
_REPOSITORY = Repository("sqlite://")
_MAILER = Mailer("bench@example.com")
_lazy_clock: Clock | None = None
_session_by_hand = contextlib.contextmanager(session_scope)


def handle_by_hand() -> Service:
    return Service(_CLOCK, _REPOSITORY, _MAILER)


def clock_by_hand() -> Clock:
    global _lazy_clock  # noqa: PLW0603 -- a hand-written lazy singleton is exactly this
    if _lazy_clock is None:
        _lazy_clock = Clock("UTC")
    return _lazy_clock


# -- timed loops (the body is the case, nothing else) ----------------------------------
def loop_call(fn: Callable[[], object], n: int) -> None:
    for _ in range(n):
        fn()


def loop_singleton(container: di_containers.Container, n: int) -> None:
    for _ in range(n):
        container.clock()


def loop_scoped_ours(container: di_containers.Container, n: int) -> None:
    for _ in range(n):
        with container.scope():
            container.session()


def loop_scoped_di(container: di_containers.Container, n: int) -> None:
    for _ in range(n):
        container.session()
        container.session.shutdown()


def loop_scoped_by_hand(n: int) -> None:
    for _ in range(n):
        with contextlib.ExitStack() as stack:
            stack.enter_context(_session_by_hand(_REPOSITORY))


def best_rates(loops: Mapping[str, Callable[[int], None]], n: int) -> dict[str, float]:
    """Calls per second of each loop: warm up, then the best of REPEATS interleaved runs."""
    for loop in loops.values():
        loop(max(n // 10, 1))
    best = dict.fromkeys(loops, sys.maxsize)
    for _ in range(REPEATS):
        for name, loop in loops.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter_ns()
                loop(n)
                elapsed = time.perf_counter_ns() - start
            finally:
                gc.enable()
            best[name] = min(best[name], elapsed)
    return {name: n * 1e9 / ns for name, ns in best.items()}


def check_wiring(ours: di_containers.Container, di: di_containers.Container) -> None:
    """Not timing: make sure each case does the work it claims before measuring it."""
    for handler, container in ((handle_ours, ours), (handle_di, di)):
        service = handler()
        if not isinstance(service, Service) or service.clock is not container.clock():
            raise SystemExit(f"{handler.__name__} was not wired")
    with ours.scope():
        session = ours.session()
        if session is not ours.session():
            raise SystemExit("scoped value was not cached within its scope")
    di_session = di.session()
    di.session.shutdown()
    if not (session.closed and di_session.closed):
        raise SystemExit("scope teardown did not run")


def in_process(tmp: Path) -> list[Result]:
    with closing_container(embedded_settings(tmp), BenchContainer) as ours:
        ours.wire(modules=[sys.modules[__name__]])
        di = DIContainer()
        di.wire(modules=[sys.modules[__name__]])
        check_wiring(ours, di)

        calls = best_rates(
            {
                OURS: lambda n: loop_call(handle_ours, n),
                DI: lambda n: loop_call(handle_di, n),
                HAND: lambda n: loop_call(handle_by_hand, n),
            },
            INJECT_CALLS,
        )
        singleton = best_rates(
            {
                OURS: lambda n: loop_singleton(ours, n),
                DI: lambda n: loop_singleton(di, n),
                HAND: lambda n: loop_call(clock_by_hand, n),
            },
            RESOLVE_CALLS,
        )
        scoped = best_rates(
            {
                OURS: lambda n: loop_scoped_ours(ours, n),
                DI: lambda n: loop_scoped_di(di, n),
                HAND: loop_scoped_by_hand,
            },
            SCOPES,
        )
        ours.unwire()
        di.unwire()

    results = []
    for operation, rates, unit in (
        ("injected call", calls, "calls/s"),
        ("singleton resolve", singleton, "calls/s"),
        ("scoped resolve", scoped, "scopes/s"),
    ):
        for baseline in (DI, HAND):
            results.append(
                Result.rate(f"{operation} vs {baseline}", rates[OURS], rates[baseline], unit)
            )
    return results


# -- cold start -----------------------------------------------------------------------
CONFIG_YAML = """\
service:
  name: bench-service
  version: 1.2.3
  environment: bench
app:
  zone: UTC
  url: sqlite:///bench.sqlite3
  sender: bench@example.com
"""

DOMAIN = '''\
"""Objects and the app settings section shared by the three cold-start variants."""

from pydantic import BaseModel, ConfigDict


class AppSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zone: str = "UTC"
    url: str = "sqlite://"
    sender: str = "noreply@example.com"


class Clock:
    def __init__(self, zone):
        self.zone = zone


class Repository:
    def __init__(self, url):
        self.url = url


class Mailer:
    def __init__(self, sender):
        self.sender = sender


class Service:
    def __init__(self, clock, repository, mailer):
        self.clock = clock
        self.repository = repository
        self.mailer = mailer
'''

PLAIN_SETTINGS = '''\
"""pydantic-settings model of the same YAML, without dtpyfw."""

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench_domain import AppSection


class ServiceSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "service"
    version: str = "0.0.0"
    environment: str = "development"


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid")

    service: ServiceSection = Field(default_factory=ServiceSection)
    app: AppSection = Field(default_factory=AppSection)
'''

OURS_CONTAINER = """\
from pydantic import Field

from bench_domain import AppSection, Clock, Mailer, Repository, Service
from dtpyfw.config import Settings
from dtpyfw.container import ServiceContainer, providers


class BenchSettings(Settings):
    app: AppSection = Field(default_factory=AppSection)


class AppContainer(ServiceContainer):
    settings_class = BenchSettings

    clock = providers.Singleton(Clock, ServiceContainer.settings.provided.app.zone)
    repository = providers.Singleton(Repository, ServiceContainer.settings.provided.app.url)
    mailer = providers.Singleton(Mailer, ServiceContainer.settings.provided.app.sender)
    service = providers.Factory(Service, clock, repository, mailer)
"""

DI_CONTAINER = """\
from dependency_injector import containers, providers

from bench_domain import Clock, Mailer, Repository, Service
from bench_settings_plain import BenchSettings


class AppContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=BenchSettings)
    clock = providers.Singleton(Clock, settings.provided.app.zone)
    repository = providers.Singleton(Repository, settings.provided.app.url)
    mailer = providers.Singleton(Mailer, settings.provided.app.sender)
    service = providers.Factory(Service, clock, repository, mailer)
"""

PLAIN_APP = '''\
"""Hand-written composition root: module globals set once at start."""

from bench_domain import Clock, Mailer, Repository, Service

CLOCK = None
REPOSITORY = None
MAILER = None


def init(settings):
    global CLOCK, REPOSITORY, MAILER
    CLOCK = Clock(settings.app.zone)
    REPOSITORY = Repository(settings.app.url)
    MAILER = Mailer(settings.app.sender)


def make_service():
    return Service(CLOCK, REPOSITORY, MAILER)
'''

WIRED_MODULE = """\
from {markers} import Provide, inject

from {package}._container import AppContainer
from bench_domain import Clock, Service


@inject
def handle_{i}(service: Service = Provide[AppContainer.service]) -> Service:
    return service


@inject
def clock_{i}(clock: Clock = Provide[AppContainer.clock]) -> Clock:
    return clock
"""

PLAIN_MODULE = """\
from bench_app_plain import _app
from bench_domain import Clock, Service


def handle_{i}() -> Service:
    return _app.make_service()


def clock_{i}() -> Clock:
    return _app.CLOCK
"""

# Each script times its own phases (reported as a breakdown) and prints them as JSON;
# the figure compared is the parent's wall time of the whole subprocess.
COLD_OURS = """\
import time

T0 = time.perf_counter_ns()
import json
import sys

import bench_app_ours
from bench_app_ours._container import AppContainer, BenchSettings
from dtpyfw.config import load_settings

T1 = time.perf_counter_ns()
settings = load_settings(sys.argv[1], settings_class=BenchSettings, env_file=None)
T2 = time.perf_counter_ns()
container = AppContainer.from_settings(settings)
T3 = time.perf_counter_ns()
container.wire(packages=[bench_app_ours])
T4 = time.perf_counter_ns()

from bench_app_ours import m00
from bench_domain import Service

if not isinstance(m00.handle_0(), Service):
    sys.exit("not wired")
print(json.dumps({"imports": T1 - T0, "load": T2 - T1, "build": T3 - T2, "wire": T4 - T3}))
"""

COLD_DI = """\
import time

T0 = time.perf_counter_ns()
import json
import sys

import yaml
from dependency_injector import providers

import bench_app_di
from bench_app_di._container import AppContainer
from bench_settings_plain import BenchSettings

T1 = time.perf_counter_ns()
with open(sys.argv[1], encoding="utf-8") as stream:
    settings = BenchSettings(**yaml.safe_load(stream))
T2 = time.perf_counter_ns()
container = AppContainer(settings=providers.Object(settings))
T3 = time.perf_counter_ns()
container.wire(packages=[bench_app_di])
T4 = time.perf_counter_ns()

from bench_app_di import m00
from bench_domain import Service

if not isinstance(m00.handle_0(), Service):
    sys.exit("not wired")
print(json.dumps({"imports": T1 - T0, "load": T2 - T1, "build": T3 - T2, "wire": T4 - T3}))
"""

COLD_HAND = """\
import time

T0 = time.perf_counter_ns()
import importlib
import json
import sys

import yaml

from bench_app_plain import _app
from bench_settings_plain import BenchSettings

T1 = time.perf_counter_ns()
with open(sys.argv[1], encoding="utf-8") as stream:
    settings = BenchSettings(**yaml.safe_load(stream))
T2 = time.perf_counter_ns()
_app.init(settings)
T3 = time.perf_counter_ns()
for index in range(__MODULES__):
    importlib.import_module(f"bench_app_plain.m{index:02d}")
T4 = time.perf_counter_ns()

from bench_app_plain import m00
from bench_domain import Service

if not isinstance(m00.handle_0(), Service):
    sys.exit("not built")
print(json.dumps({"imports": T1 - T0, "load": T2 - T1, "build": T3 - T2, "wire": T4 - T3}))
"""


def write_cold_start_tree(root: Path) -> dict[str, Path]:
    """The YAML, three 50-module packages and one start script per variant."""
    (root / "config.yaml").write_text(CONFIG_YAML)
    (root / "bench_domain.py").write_text(DOMAIN)
    (root / "bench_settings_plain.py").write_text(PLAIN_SETTINGS)
    packages = {
        "bench_app_ours": (OURS_CONTAINER, WIRED_MODULE, "dtpyfw.container"),
        "bench_app_di": (DI_CONTAINER, WIRED_MODULE, "dependency_injector.wiring"),
        "bench_app_plain": (PLAIN_APP, PLAIN_MODULE, ""),
    }
    for package, (root_module, template, markers) in packages.items():
        directory = root / package
        directory.mkdir()
        (directory / "__init__.py").write_text("")
        name = "_app.py" if package == "bench_app_plain" else "_container.py"
        (directory / name).write_text(root_module)
        for i in range(MODULES):
            source = template.format(i=i, package=package, markers=markers)
            (directory / f"m{i:02d}.py").write_text(source)
    scripts = {
        OURS: ("cold_ours.py", COLD_OURS),
        DI: ("cold_di.py", COLD_DI),
        HAND: ("cold_hand.py", COLD_HAND.replace("__MODULES__", str(MODULES))),
    }
    paths = {}
    for variant, (filename, source) in scripts.items():
        paths[variant] = root / filename
        paths[variant].write_text(source)
    return paths


def run_cold(script: Path, config: Path, env: Mapping[str, str]) -> tuple[float, dict[str, float]]:
    """Wall milliseconds of one fresh interpreter running ``script``, and its phases."""
    start = time.perf_counter_ns()
    done = subprocess.run(
        [sys.executable, str(script), str(config)],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall_ms = (time.perf_counter_ns() - start) / 1e6
    if done.returncode != 0:
        raise SystemExit(f"{script.name} failed:\n{done.stdout}{done.stderr}")
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    return wall_ms, {name: ns / 1e6 for name, ns in phases.items()}


def cold_start(tmp: Path) -> tuple[list[Result], str]:
    root = tmp / "cold"
    root.mkdir()
    scripts = write_cold_start_tree(root)
    config = root / "config.yaml"
    # Same environment for every variant: no DTPYFW_* overrides, bytecode caches on.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DTPYFW_") and k not in {"PYTHONDONTWRITEBYTECODE", "PYTHONPATH"}
    }
    for script in scripts.values():  # warm-up: writes the .pyc files, not timed
        run_cold(script, config, env)
    walls: dict[str, list[float]] = {variant: [] for variant in scripts}
    phases: dict[str, list[dict[str, float]]] = {variant: [] for variant in scripts}
    for _ in range(COLD_RUNS):
        for variant, script in scripts.items():  # interleaved, so drift hits all alike
            wall, phase = run_cold(script, config, env)
            walls[variant].append(wall)
            phases[variant].append(phase)

    median = {variant: statistics.median(values) for variant, values in walls.items()}
    results = [
        Result.duration(f"cold start vs {baseline}", median[OURS], median[baseline], "ms")
        for baseline in (DI, HAND)
    ]
    names = ("imports", "load", "build", "wire")
    rows = []
    for variant in scripts:
        cells = [statistics.median(p[name] for p in phases[variant]) for name in names]
        rows.append(
            (variant, *(f"{c:.1f}" for c in cells), f"{sum(cells):.1f}", f"{median[variant]:.1f}")
        )
    breakdown = format_rows(
        ("cold start, median ms", "imports", "load", "build", "wire/import", "in-script", "wall"),
        rows,
    )
    return results, breakdown


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dtpyfw-bench-") as name:
        tmp = Path(name)
        results = in_process(tmp)
        cold_results, breakdown = cold_start(tmp)
    results.extend(cold_results)
    print(breakdown)
    print()
    notes = [
        f"throughput: best of {REPEATS} runs per case (injected {INJECT_CALLS:,} calls, "
        f"singleton {RESOLVE_CALLS:,} calls, scoped {SCOPES:,} scopes), gc paused",
        "ratio above 1 means ours is faster (rate: ours/baseline; time: baseline/ours)",
        "scoped baseline for dependency-injector: providers.Resource, resolve + shutdown()",
        "hand-written singleton: lazily created module global behind a getter",
        f"cold start: wall time of a fresh interpreter, median of {COLD_RUNS}; "
        f"{MODULES} modules x 2 @inject functions wired (hand-written imports them unwired)",
        f"python {sys.version.split()[0]}, total benchmark time "
        f"{time.perf_counter() - started:.1f} s",
    ]
    report("container", results, title="container benchmark", notes=notes)


if __name__ == "__main__":
    main()
