"""The tables the example owns: notes and the users who may write them."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.db import ModelBase


class Note(ModelBase):
    """A note; its body lives in object storage under ``notes/<id>.txt``."""

    __tablename__ = "notes"

    title: Mapped[str] = mapped_column(String(200))
    size: Mapped[int]


class User(ModelBase):
    """A user who logs in with a password (stored as a bcrypt hash only)."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(500), default="")
