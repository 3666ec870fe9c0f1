"""The ``dtpyfw`` command: config check/show/schema, health, graph."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dtpyfw.cli._consume import register as register_consume
from dtpyfw.cli._db import register as register_db
from dtpyfw.cli._worker import register as register_worker
from dtpyfw.core.errors import ConfigError, DtpyfwError

if TYPE_CHECKING:
    from dtpyfw.config import Settings
    from dtpyfw.container import ServiceContainer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 check failed, 2 bad usage)."""
    stream = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(stream)
        return EXIT_USAGE
    try:
        return int(args.handler(args, stream))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    except DtpyfwError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtpyfw", description="dtpyfw service tools")
    parser.add_argument(
        "--settings-class",
        metavar="MODULE:CLASS",
        help="your Settings subclass (default dtpyfw.config:Settings)",
    )
    parser.add_argument(
        "--container-class",
        metavar="MODULE:CLASS",
        help="your ServiceContainer subclass (default dtpyfw.container:ServiceContainer)",
    )
    commands = parser.add_subparsers(title="commands")

    config = commands.add_parser("config", help="validate, show or describe settings")
    config_commands = config.add_subparsers(title="config commands")
    check = config_commands.add_parser("check", help="validate a settings file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_config_check)
    show = config_commands.add_parser("show", help="print resolved settings, secrets masked")
    show.add_argument("file", type=Path)
    show.add_argument("--format", choices=("yaml", "json"), default="yaml")
    show.set_defaults(handler=_config_show)
    schema = config_commands.add_parser("schema", help="JSON Schema of the settings")
    schema.set_defaults(handler=_config_schema)
    example = config_commands.add_parser("example", help="a commented example settings file")
    example.set_defaults(handler=_config_example)

    health = commands.add_parser("health", help="ping every configured backend")
    health.add_argument("file", type=Path)
    health.add_argument("--timeout", type=float, default=None, help="seconds per ping")
    health.set_defaults(handler=_health)

    graph = commands.add_parser("graph", help="print the provider graph")
    graph.add_argument("file", type=Path)
    graph.add_argument("--format", choices=("text", "mermaid"), default="text")
    graph.set_defaults(handler=_graph)

    register_db(commands)
    register_consume(commands)
    register_worker(commands)
    return parser


def _config_check(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.container._service import PRIMARY_PROVIDER

    settings = _load(args)
    # Every optional section, in the container's order: the summary never lags a new one.
    enabled = [name for name in PRIMARY_PROVIDER if getattr(settings, name, None)]
    print(f"ok: {args.file} (subsystems: {', '.join(enabled) or 'none'})", file=out)
    return EXIT_OK


def _config_show(args: argparse.Namespace, out: TextIO) -> int:
    data = _load(args).model_dump(mode="json")  # SecretStr dumps as '**********'
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=False), file=out)
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False).rstrip(), file=out)
    return EXIT_OK


def _config_schema(args: argparse.Namespace, out: TextIO) -> int:
    schema = _settings_class(args).model_json_schema()
    print(json.dumps(schema, indent=2), file=out)
    return EXIT_OK


def _config_example(args: argparse.Namespace, out: TextIO) -> int:
    from dtpyfw.config._example import render_example

    out.write(render_example(_settings_class(args)))
    return EXIT_OK


def _health(args: argparse.Namespace, out: TextIO) -> int:
    container = _container_class(args).from_settings(_load(args))

    async def run() -> Any:
        try:
            return await container.ahealth(timeout=args.timeout)
        finally:
            await container.ashutdown_resources()

    report = asyncio.run(run())
    if not report.results:
        print("no subsystem is configured: nothing to check", file=out)
    for result in report.results:
        status = "ok  " if result.ok else "FAIL"
        line = f"{status} {result.name:<10} {result.latency_ms:8.1f} ms"
        if result.error:
            line += f"  {result.error}"
        print(line, file=out)
    return EXIT_OK if report.ok else EXIT_FAILED


def _graph(args: argparse.Namespace, out: TextIO) -> int:
    container = _container_class(args).from_settings(_load(args))
    print(container.graph(args.format), file=out)
    return EXIT_OK


def _load(args: argparse.Namespace) -> Settings:
    from dtpyfw.config import load_settings

    return load_settings(args.file, settings_class=_settings_class(args))


def _settings_class(args: argparse.Namespace) -> type[Settings]:
    from dtpyfw.config import Settings

    if args.settings_class:
        found: type[Settings] = _import(args.settings_class, Settings)
        return found
    if args.container_class:
        return _container_class(args).settings_class
    return Settings


def _container_class(args: argparse.Namespace) -> type[ServiceContainer]:
    from dtpyfw.container import ServiceContainer

    if args.container_class:
        found: type[ServiceContainer] = _import(args.container_class, ServiceContainer)
        return found
    return ServiceContainer


def _import(spec: str, base: type[Any]) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise DtpyfwError(f"{spec!r}: expected MODULE:CLASS")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DtpyfwError(f"cannot import {spec!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, base)):
        raise DtpyfwError(f"{spec!r} is not a subclass of {base.__name__}")
    return found
