"""A CloudEvents 1.0 validator written from the specification, not from our decoder.

Sources: the CloudEvents 1.0.2 core specification ("Context Attributes",
"Type System"), the JSON event format ("data" / "data_base64") and the
Kafka protocol binding (binary and structured content modes). Each function
returns the list of violations; an empty list means conforming.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

REQUIRED = ("id", "source", "specversion", "type")
# Attribute names: lower-case ASCII letters and digits; SHOULD NOT exceed 20 characters.
_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# RFC 3339 date-time (the "Timestamp" type).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# RFC 2046 media type: type "/" subtype, then optional parameters.
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;.*)?$")


def context_problems(attributes: dict[str, Any]) -> list[str]:
    """Violations of the context-attribute rules by ``attributes`` (name -> value)."""
    problems = [
        f"attribute name {name!r} is not [a-z0-9]{{1,20}}"
        for name in attributes
        if not _NAME.match(name)
    ]
    for name in REQUIRED:
        value = attributes.get(name)
        if not isinstance(value, str) or value == "":
            problems.append(f"required attribute {name!r} missing or empty")
    if attributes.get("specversion") not in (None, "1.0"):
        problems.append(f"specversion {attributes['specversion']!r} is not '1.0'")
    if "time" in attributes and attributes["time"] is not None:
        time = attributes["time"]
        if not isinstance(time, str) or not _RFC3339.match(time):
            problems.append(f"time {time!r} is not an RFC 3339 timestamp")
        else:
            datetime.fromisoformat(time.replace("Z", "+00:00"))
    content_type = attributes.get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str) or not _MEDIA_TYPE.match(content_type)
    ):
        problems.append(f"datacontenttype {content_type!r} is not an RFC 2046 media type")
    schema = attributes.get("dataschema")
    if schema is not None and (not isinstance(schema, str) or not urlsplit(schema).scheme):
        problems.append(f"dataschema {schema!r} is not an absolute URI")
    subject = attributes.get("subject")
    if subject is not None and (not isinstance(subject, str) or subject == ""):
        problems.append("subject, when present, must be a non-empty string")
    for name, value in attributes.items():
        # Type system: String, Integer, Boolean, Binary, URI, URI-reference, Timestamp;
        # in JSON, strings, integers and booleans (null means absent).
        if value is not None and not isinstance(value, str | bool | int):
            problems.append(f"attribute {name!r} has a {type(value).__name__}, not a CE type")
    return problems


def json_event_problems(raw: bytes) -> list[str]:
    """Violations of the JSON event format by one encoded event."""
    try:
        event = json.loads(raw)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(event, dict):
        return ["a JSON event is an object"]
    problems = []
    if "data" in event and "data_base64" in event:
        problems.append("data and data_base64 are mutually exclusive")
    if "data_base64" in event:
        try:
            base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            problems.append("data_base64 is not Base64")
    attributes = {k: v for k, v in event.items() if k not in ("data", "data_base64")}
    return problems + context_problems(attributes)


def kafka_problems(value: bytes, headers: Iterable[tuple[str, bytes]]) -> list[str]:
    """Violations of the Kafka protocol binding by one record (either content mode)."""
    pairs = list(headers)
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        return [f"repeated headers: {names}"]
    found = dict(pairs)
    content_type = found.get("content-type", b"").decode()
    if content_type.startswith("application/cloudevents"):
        if not content_type.startswith("application/cloudevents+json"):
            return [f"unexpected structured format {content_type!r}"]
        return json_event_problems(value)
    # Binary mode: every attribute a ce_ header, datacontenttype in content-type.
    problems = []
    if "ce_datacontenttype" in found:
        problems.append("binary mode carries datacontenttype in content-type, not a ce_ header")
    attributes: dict[str, Any] = {}
    for name, raw in pairs:
        if name.startswith("ce_"):
            try:
                attributes[name[3:]] = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"header {name} is not UTF-8")
    if content_type:
        attributes["datacontenttype"] = content_type
    return problems + context_problems(attributes)
