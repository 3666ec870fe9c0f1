"""Fetch the test servers that come from package registries, once, into ``~/.cache/dtpyfw``.

* :func:`maven_jars`: a JVM server's jars (a Maven artifact and everything its
  main class needs), resolved by ``mvn dependency:copy-dependencies`` from a
  generated POM into ``<cache>/maven/<name>/<digest>/libs``;
* :func:`go_binary`: a Go program built by ``go install module@version`` into
  ``<cache>/go/<name>-<version>/``;
* :func:`java_executable`: ``$JAVA_HOME/bin/java`` or ``java`` on PATH.

Each fetch takes a file lock, so parallel test processes fetch once, and
writes into a staging directory renamed into place, so an interrupted fetch
leaves nothing that looks complete. A failure raises ``_LaunchError`` with one
line saying what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from dtpyfw.testing._launchers import _LaunchError, _one_line

_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_FETCH_TIMEOUT = 900.0  # seconds; a cold Maven or Go cache on a slow link


def cache_root() -> Path:
    """``$DTPYFW_CACHE_DIR``, else ``$XDG_CACHE_HOME/dtpyfw``, else ``~/.cache/dtpyfw``."""
    configured = os.environ.get("DTPYFW_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dtpyfw"


def java_executable() -> str | None:
    """The ``java`` to run servers with: ``$JAVA_HOME/bin/java`` first, then PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def maven_jars(name: str, artifacts: Sequence[str]) -> Path:
    """The directory holding ``artifacts`` (``group:artifact:version``) and their runtime deps."""
    digest = hashlib.sha256("\n".join(artifacts).encode()).hexdigest()[:12]
    final = cache_root() / "maven" / name / digest
    libs = final / "libs"
    if (final / "complete").exists():
        return libs
    with _locked(final.parent) as parent:
        if (final / "complete").exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise _LaunchError(f"mvn is not on PATH, so {name}'s jars cannot be fetched")
        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=parent))
        try:
            (staging / "pom.xml").write_text(_pom(name, artifacts))
            _run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(staging / "pom.xml"),
                    # Pinned: a bare "dependency:" prefix takes whichever version
                    # this Maven binds by default, which differs between Mavens.
                    f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging / 'libs'}",
                ],
                what=f"mvn could not fetch {name} ({', '.join(artifacts)})",
            )
            (staging / "complete").touch()
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def go_binary(name: str, module: str, version: str) -> Path:
    """The path of program ``name``, built by ``go install module@version`` on first use."""
    final = cache_root() / "go" / f"{name}-{version}"
    binary = final / name
    if os.access(binary, os.X_OK):
        return binary
    with _locked(final.parent) as parent:
        if os.access(binary, os.X_OK):
            return binary
        go = shutil.which("go")
        if go is None:
            raise _LaunchError(f"go is not on PATH, so {module}@{version} cannot be built")
        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=parent))
        try:
            # The module cache and build cache stay Go's own (GOMODCACHE, GOCACHE): a
            # second project that builds the same module reuses them.
            _run(
                [go, "install", f"{module}@{version}"],
                what=f"go install {module}@{version} failed",
                env={**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0"},
            )
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not os.access(binary, os.X_OK):
        raise _LaunchError(f"go install {module}@{version} built no program named {name}")
    return binary


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[Path]:
    """Hold ``directory/.lock`` exclusively: another test process may be fetching too."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield directory


def _run(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=_FETCH_TIMEOUT, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        raise _LaunchError(f"{what}: no answer within {_FETCH_TIMEOUT:g}s") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        errors = [line for line in output if "ERROR" in line or "error" in line] or output
        raise _LaunchError(f"{what}: {_one_line(' '.join(errors[-3:]))}")


def _pom(name: str, artifacts: Sequence[str]) -> str:
    dependencies = []
    for coordinate in artifacts:
        group, artifact, version = coordinate.split(":")
        dependencies.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">'
        "<modelVersion>4.0.0</modelVersion>"
        f"<groupId>dtpyfw.testing</groupId><artifactId>{name}</artifactId>"
        "<version>1</version><packaging>pom</packaging>"
        f"<dependencies>{''.join(dependencies)}</dependencies></project>\n"
    )
