"""Query-string filters, sort and pagination params; Page / CursorPageOut responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from dtpyfw.api import (
    CursorPage,
    CursorPageOut,
    ListQuery,
    OffsetPage,
    Page,
    create_app,
    list_query,
)
from dtpyfw.core.errors import FilterError
from dtpyfw.testing import closing_container, embedded_settings


class Item(BaseModel):
    id: int
    title: str


ITEMS = [Item(id=i, title=f"item {i}") for i in range(1, 8)]


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/query")
    async def query(q: Annotated[ListQuery, Depends(list_query())]) -> dict[str, Any]:
        return {"filters": q.filters, "sort": q.sort}

    @router.get("/search")
    async def search(
        q: Annotated[str, Query()],
        lq: Annotated[ListQuery, Depends(list_query(exclude={"q"}))],
    ) -> dict[str, Any]:
        return {"q": q, "filters": lq.filters}

    @router.get("/items", response_model=Page[Item])
    async def items(page: Annotated[OffsetPage, Query()]) -> Page[Item]:
        chunk = ITEMS[page.offset : page.offset + page.limit]
        return Page[Item](items=chunk, total=len(ITEMS), limit=page.limit, offset=page.offset)

    @router.get("/stream", response_model=CursorPageOut[Item])
    async def stream(page: Annotated[CursorPage, Query()]) -> CursorPageOut[Item]:
        start = int(page.cursor or 0)
        chunk = ITEMS[start : start + page.limit]
        following = start + page.limit
        return CursorPageOut[Item](
            items=chunk, next_cursor=str(following) if following < len(ITEMS) else None
        )

    @router.get("/strict")
    async def strict(q: Annotated[ListQuery, Depends(list_query())]) -> None:
        raise FilterError(f"unknown filter field(s): {', '.join(q.filters)}")

    return router


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with (
        closing_container(embedded_settings(tmp_path)) as container,
        TestClient(create_app(container, routers=[_router()], configure_logs=False)) as test,
    ):
        yield test


def test_filters_and_sort_are_collected(client: TestClient) -> None:
    """Every non-reserved parameter is a filter; sort is split on commas and may repeat."""
    response = client.get(
        "/query",
        params=[
            ("title__ilike", "%draft%"),
            ("size__gte", "10"),
            ("status", "open"),
            ("sort", "-created_at, title"),
            ("sort", "id"),
            ("limit", "5"),
            ("offset", "10"),
            ("cursor", "abc"),
        ],
    )
    assert response.json() == {
        "filters": {"title__ilike": "%draft%", "size__gte": "10", "status": "open"},
        "sort": ["-created_at", "title", "id"],
    }
    assert client.get("/query").json() == {"filters": {}, "sort": []}
    assert client.get("/query", params={"sort": ""}).json()["sort"] == []


def test_route_params_can_be_excluded(client: TestClient) -> None:
    """list_query(exclude={"q"}) leaves the route's own parameter out of the filters."""
    response = client.get("/search", params={"q": "hello", "tag__in": "a,b"})
    assert response.json() == {"q": "hello", "filters": {"tag__in": "a,b"}}


@pytest.mark.parametrize(
    "params",
    [
        [("title", "a"), ("title", "b")],
        [("bad name", "x")],
        [("1title", "x")],
        [("title;drop", "x")],
        [("sort", "-title;drop")],
        [("sort", "--title")],
        [("sort", "a,b,c,d,e,f")],
        [(f"f{i}", "x") for i in range(21)],
        [("title", "x" * 1001)],
    ],
)
def test_malformed_filters_are_400_problems(client: TestClient, params: Any) -> None:
    """Repeated, malformed or too many filters / sort keys: 400 invalid-filter problem."""
    response = client.get("/query", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:dtpyfw:problem:invalid-filter"


def test_filter_error_from_the_database_layer_is_400(client: TestClient) -> None:
    """A FilterError raised by FilterSpec reaches the client as the same 400 problem."""
    response = client.get("/strict", params={"colour": "red"})
    assert response.status_code == 400
    assert response.json()["detail"] == "unknown filter field(s): colour"


def test_offset_page(client: TestClient) -> None:
    """limit defaults to 20 and is bounded to 1..100; offset to 0..10000."""
    page = client.get("/items", params={"limit": 3, "offset": 2}).json()
    assert page == {
        "items": [
            {"id": 3, "title": "item 3"},
            {"id": 4, "title": "item 4"},
            {"id": 5, "title": "item 5"},
        ],
        "total": 7,
        "limit": 3,
        "offset": 2,
    }
    assert client.get("/items").json()["limit"] == 20
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 10_001}, {"limit": "x"}):
        response = client.get("/items", params=bad)
        assert response.status_code == 422
        assert response.json()["type"] == "urn:dtpyfw:problem:validation-error"
    assert client.get("/items", params={"limit": 100}).status_code == 200


def test_cursor_page(client: TestClient) -> None:
    """Following next_cursor walks the whole list; the last page has next_cursor null."""
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get("/stream", params=params).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item.id for item in ITEMS]
    assert client.get("/stream", params={"cursor": "x" * 2049}).status_code == 422


def test_page_models_document_themselves() -> None:
    """Page[T] and CursorPageOut[T] are generic pydantic models with the documented fields."""
    assert set(Page[Item].model_fields) == {"items", "total", "limit", "offset"}
    assert set(CursorPageOut[Item].model_fields) == {"items", "next_cursor"}
    assert Page[Item](items=[], limit=20, offset=0).total is None
    schema = Page[Item].model_json_schema()
    assert schema["properties"]["items"]["items"]["$ref"].endswith("Item")
