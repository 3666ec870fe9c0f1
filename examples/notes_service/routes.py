"""HTTP endpoints: each takes its clients from the container through wiring."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dtpyfw.api import ListQuery, OffsetPage, Page, list_query, require_scopes
from dtpyfw.container import Provide, ServiceContainer, inject
from dtpyfw.core.errors import ObjectNotFound
from dtpyfw.db import FilterSpec
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


#: What a client may filter and sort the notes list by (anything else is a 400).
NOTE_FILTERS = FilterSpec(
    Note,
    fields={
        "title": {"eq", "ilike", "in"},
        "size": {"eq", "gt", "gte", "lt", "lte", "range"},
        "created_at": {"gte", "lte", "range"},
    },
    sortable={"title", "size", "created_at"},
    default_sort=("-created_at",),
)
writers = require_scopes("notes:write")


@router.post("", status_code=201, response_model=NoteOut, dependencies=[Depends(writers)])
@inject
async def create_note(
    payload: NoteIn,
    session: AsyncSession = Depends(Provide[ServiceContainer.db.async_session]),
    store: Any = Depends(Provide[ServiceContainer.storage.async_store]),
    bus: Any = Depends(Provide[ServiceContainer.messaging.async_bus]),
) -> NoteOut:
    """Store the body, record the note, announce it (needs the notes:write scope)."""
    body = payload.body.encode("utf-8")
    note = Note(title=payload.title, size=len(body))
    session.add(note)
    await session.flush()
    await store.put(f"notes/{note.id}.txt", body, content_type="text/plain; charset=utf-8")
    await bus.publish(
        "note.created", {"id": str(note.id), "title": note.title}, subject=str(note.id)
    )
    return NoteOut(id=note.id, title=note.title, size=note.size, created_at=note.created_at)


@router.get("", response_model=Page[NoteOut])
@inject
async def list_notes(
    page: Annotated[OffsetPage, Query()],
    query: Annotated[ListQuery, Depends(list_query())],
    session: AsyncSession = Depends(Provide[ServiceContainer.db.async_session]),
) -> Page[NoteOut]:
    """Newest first by default: ``?title__ilike=%25draft%25&size__gte=10&sort=title&limit=10``."""
    stmt = NOTE_FILTERS.apply(select(Note), query.filters, query.sort)
    rows = (await session.scalars(stmt.limit(page.limit).offset(page.offset))).all()
    counted = select(func.count()).select_from(Note).where(*NOTE_FILTERS.where(query.filters))
    total = int(await session.scalar(counted) or 0)
    items = [NoteOut(id=n.id, title=n.title, size=n.size, created_at=n.created_at) for n in rows]
    return Page[NoteOut](items=items, total=total, limit=page.limit, offset=page.offset)


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
