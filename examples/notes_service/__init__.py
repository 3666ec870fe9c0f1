"""A small but real service: notes in the database, bodies in storage, events on the bus,
users who log in with a password and call it with bearer tokens.

Every client comes from the container; no endpoint constructs one.
"""

from examples.notes_service.app import build_app, build_container

__all__ = ["build_app", "build_container"]
