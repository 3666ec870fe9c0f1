"""The one table the example owns."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dtpyfw.db import ModelBase


class Note(ModelBase):
    """A note; its body lives in object storage under ``notes/<id>.txt``."""

    __tablename__ = "notes"

    title: Mapped[str] = mapped_column(String(200))
    size: Mapped[int]
