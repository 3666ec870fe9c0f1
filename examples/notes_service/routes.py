"""HTTP endpoints: each takes its clients from the container through wiring."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dtpyfw.container import Provide, ServiceContainer, inject
from dtpyfw.core.errors import ObjectNotFound
from examples.notes_service.models import Note

router = APIRouter(prefix="/notes", tags=["notes"])
events_router = APIRouter(tags=["events"])


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=1_000_000)


class NoteOut(BaseModel):
    id: uuid.UUID
    title: str
    size: int
    created_at: datetime | None


class NoteWithBody(NoteOut):
    body: str


@router.post("", status_code=201, response_model=NoteOut)
@inject
async def create_note(
    payload: NoteIn,
    session: AsyncSession = Depends(Provide[ServiceContainer.db.async_session]),
    store: Any = Depends(Provide[ServiceContainer.storage.async_store]),
    bus: Any = Depends(Provide[ServiceContainer.messaging.async_bus]),
) -> NoteOut:
    """Store the body, record the note, announce it. The session commits with the request."""
    body = payload.body.encode("utf-8")
    note = Note(title=payload.title, size=len(body))
    session.add(note)
    await session.flush()
    await store.put(f"notes/{note.id}.txt", body, content_type="text/plain; charset=utf-8")
    await bus.publish(
        "note.created", {"id": str(note.id), "title": note.title}, subject=str(note.id)
    )
    return NoteOut(id=note.id, title=note.title, size=note.size, created_at=note.created_at)


@router.get("", response_model=list[NoteOut])
@inject
async def list_notes(
    session: AsyncSession = Depends(Provide[ServiceContainer.db.async_session]),
) -> list[NoteOut]:
    """Newest first."""
    rows = (await session.scalars(select(Note).order_by(Note.id.desc()).limit(100))).all()
    return [NoteOut(id=n.id, title=n.title, size=n.size, created_at=n.created_at) for n in rows]


@router.get("/{note_id}", response_model=NoteWithBody)
@inject
async def get_note(
    note_id: uuid.UUID,
    session: AsyncSession = Depends(Provide[ServiceContainer.db.async_session]),
    store: Any = Depends(Provide[ServiceContainer.storage.async_store]),
) -> NoteWithBody:
    """The note and its body; 404 as problem details when it does not exist."""
    note = await session.get(Note, note_id)
    if note is None:
        raise ObjectNotFound(f"note {note_id} does not exist")
    body = (await store.get(f"notes/{note.id}.txt")).decode("utf-8")
    return NoteWithBody(
        id=note.id, title=note.title, size=note.size, created_at=note.created_at, body=body
    )


@events_router.get("/events")
@inject
async def recent_events(
    transport: Any = Depends(Provide[ServiceContainer.messaging.transport]),
) -> list[dict[str, Any]]:
    """What the in-memory bus carried, oldest first (the memory transport keeps a log)."""
    return [
        {"id": m.id, "type": m.type, "subject": m.subject, "data": m.data}
        for m in list(transport.published)[-50:]
    ]
