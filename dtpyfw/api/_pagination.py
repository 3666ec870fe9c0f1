"""Pagination, sorting and filtering from the query string, and the page response models.

::

    @router.get("/notes", response_model=Page[NoteOut])
    async def list_notes(
        page: Annotated[OffsetPage, Query()],
        query: Annotated[ListQuery, Depends(list_query())],
    ) -> Page[NoteOut]:
        stmt = spec.apply(select(Note), query.filters, query.sort)   # dtpyfw.db.FilterSpec
        ...

``?title__ilike=%25draft%25&size__gte=10&sort=-created_at,title&limit=50``
gives ``filters={"title__ilike": "%draft%", "size__gte": "10"}``,
``sort=["-created_at", "title"]`` and ``limit=50``. What a filter may name is
the database layer's to decide (``FilterSpec`` raises ``FilterError``, a 400
``invalid-filter`` problem); this layer only bounds what it collects.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependency's
# annotations, and ``Request`` is imported only when a dependency is built.
__all__ = [
    "RESERVED_PARAMS",
    "CursorPage",
    "CursorPageOut",
    "ListQuery",
    "OffsetPage",
    "Page",
    "list_query",
]

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from dtpyfw.core.errors import FilterError

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000
MAX_CURSOR_LENGTH = 2048
MAX_FILTERS = 20
MAX_SORT_KEYS = 5
MAX_VALUE_LENGTH = 1000
#: Query parameters that are never filters.
RESERVED_PARAMS = frozenset({"sort", "limit", "offset", "cursor"})
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SORT_KEY = re.compile(r"^-?[A-Za-z_][A-Za-z0-9_]{0,127}$")


class OffsetPage(BaseModel):
    """``?limit=&offset=``: use as ``page: Annotated[OffsetPage, Query()]``."""

    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page (at most 100)"
    )
    offset: int = Field(
        default=0,
        ge=0,
        le=MAX_OFFSET,
        description="items to skip (at most 10000; page deeper with a cursor)",
    )


class CursorPage(BaseModel):
    """``?limit=&cursor=``: use as ``page: Annotated[CursorPage, Query()]``."""

    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page (at most 100)"
    )
    cursor: str | None = Field(
        default=None,
        max_length=MAX_CURSOR_LENGTH,
        description="the next_cursor of the previous page; absent for the first page",
    )


class Page(BaseModel, Generic[T]):
    """One page of an offset-paginated list; ``total`` is None when not counted."""

    items: list[T]
    total: int | None = None
    limit: int
    offset: int


class CursorPageOut(BaseModel, Generic[T]):
    """One page of a cursor-paginated list; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The filters and sort keys of a list request, ready for ``FilterSpec.apply``."""

    filters: dict[str, str] = field(default_factory=dict)
    sort: list[str] = field(default_factory=list)


def list_query(*, exclude: Iterable[str] = ()) -> Callable[..., ListQuery]:
    """A dependency collecting every query parameter except the reserved ones into a ListQuery.

    ``exclude`` names the route's own parameters (say ``q``) that are not filters.
    ``sort`` is comma-separated (``sort=-created_at,title``) and may repeat. A
    filter given twice, a malformed name, or more than 20 filters / 5 sort keys
    raise :class:`~dtpyfw.core.errors.FilterError` (400).
    """
    from starlette.requests import Request

    skip = RESERVED_PARAMS | frozenset(exclude)

    def dependency(request: Request) -> ListQuery:
        filters: dict[str, str] = {}
        sort: list[str] = []
        for key, value in request.query_params.multi_items():
            if key == "sort":
                sort.extend(_sort_keys(value))
                continue
            if key in skip:
                continue
            if not _FILTER_KEY.match(key):
                raise FilterError(f"invalid filter name {key[:64]!r}")
            if key in filters:
                raise FilterError(f"filter {key!r} is given more than once")
            if len(value) > MAX_VALUE_LENGTH:
                raise FilterError(f"filter {key!r} is longer than {MAX_VALUE_LENGTH} characters")
            filters[key] = value
        if len(filters) > MAX_FILTERS:
            raise FilterError(f"at most {MAX_FILTERS} filters per request")
        if len(sort) > MAX_SORT_KEYS:
            raise FilterError(f"at most {MAX_SORT_KEYS} sort keys per request")
        return ListQuery(filters=filters, sort=sort)

    return dependency


def _sort_keys(value: str) -> list[str]:
    keys = [item.strip() for item in value.split(",") if item.strip()]
    for key in keys:
        if not _SORT_KEY.match(key):
            raise FilterError(f"invalid sort key {key[:64]!r}")
    return keys
