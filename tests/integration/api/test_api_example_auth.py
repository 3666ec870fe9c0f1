"""The example service's auth end to end: login, protected calls, refresh, reuse detection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from examples.notes_service import build_app, build_container

PASSWORD = "a-test-password"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    env = {
        "NOTES_DB": str(tmp_path / "notes.sqlite3"),
        "NOTES_STORAGE": str(tmp_path / "objects"),
        "NOTES_BCRYPT_ROUNDS": "10",
        "NOTES_DEMO_PASSWORD": PASSWORD,
    }
    with TestClient(build_app(build_container(env=env, env_file=None))) as test_client:
        yield test_client


def _login(client: TestClient) -> dict[str, object]:
    response = client.post("/auth/login", json={"username": "demo", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_refresh_and_reuse_detection(client: TestClient) -> None:
    """Log in, call a protected endpoint, refresh, replay the old refresh token: rejected."""
    pair = _login(client)
    assert pair["token_type"] == "Bearer"
    me = client.get("/auth/me", headers=_bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "demo"
    assert me.json()["scopes"] == ["notes:read", "notes:write"]

    refreshed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    new_pair = refreshed.json()
    assert new_pair["refresh_token"] != pair["refresh_token"]
    assert client.get("/auth/me", headers=_bearer(new_pair["access_token"])).status_code == 200

    replay = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replay.status_code == 401
    assert replay.headers["content-type"] == "application/problem+json"
    assert replay.json()["type"] == "urn:dtpyfw:problem:invalid-token"
    assert "already used" in replay.json()["detail"]
    assert replay.headers["www-authenticate"].startswith("Bearer")
    # The whole family is gone: the legitimate holder must log in again.
    again = client.post("/auth/refresh", json={"refresh_token": new_pair["refresh_token"]})
    assert again.status_code == 401
    assert client.get("/auth/me", headers=_bearer(new_pair["access_token"])).status_code == 401
    assert (
        client.get("/auth/me", headers=_bearer(_login(client)["access_token"])).status_code == 200
    )


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient) -> None:
    """Both are 401 with one message; the demo password from the environment is the one."""
    wrong = client.post("/auth/login", json={"username": "demo", "password": "demo-password"})
    unknown = client.post("/auth/login", json={"username": "nobody", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "wrong user name or password"
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert "demo-password" not in wrong.text
    empty = client.post("/auth/login", json={"username": "demo", "password": ""})
    assert empty.status_code == 422


def test_protected_endpoint_and_scopes(client: TestClient) -> None:
    """Writing a note needs a bearer token with notes:write; reading is public."""
    anonymous = client.post("/notes", json={"title": "t", "body": "b"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="notes-service"'
    tokens = client.app.state.container.security.token_service()  # type: ignore[attr-defined]
    reader = tokens.issue_access("someone", scopes=["notes:read"])
    forbidden = client.post("/notes", json={"title": "t", "body": "b"}, headers=_bearer(reader))
    assert forbidden.status_code == 403
    assert (
        'error="insufficient_scope", scope="notes:write"' in forbidden.headers["www-authenticate"]
    )
    assert client.get("/notes").status_code == 200


def test_logout_ends_the_session(client: TestClient) -> None:
    """After logout neither the refresh token nor its access token works."""
    pair = _login(client)
    assert (
        client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code
        == 204
    )
    assert (
        client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    assert client.get("/auth/me", headers=_bearer(pair["access_token"])).status_code == 401


def test_notes_list_filters_sorts_and_pages(client: TestClient) -> None:
    """The list takes FilterSpec filters and sort from the query string, with offset paging."""
    headers = _bearer(_login(client)["access_token"])
    for title, body in [("alpha draft", "x" * 5), ("beta", "x" * 50), ("gamma draft", "x" * 500)]:
        assert (
            client.post("/notes", json={"title": title, "body": body}, headers=headers).status_code
            == 201
        )
    drafts = client.get("/notes", params={"title__ilike": "%draft%", "sort": "-size"}).json()
    assert [n["title"] for n in drafts["items"]] == ["gamma draft", "alpha draft"]
    assert drafts["total"] == 2
    page = client.get("/notes", params={"sort": "title", "limit": 2, "offset": 1}).json()
    assert [n["title"] for n in page["items"]] == ["beta", "gamma draft"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    sized = client.get("/notes", params={"size__range": "10,100"}).json()
    assert [n["title"] for n in sized["items"]] == ["beta"]
    bad_field = client.get("/notes", params={"owner": "me"})
    assert bad_field.status_code == 400
    assert bad_field.json()["type"] == "urn:dtpyfw:problem:invalid-filter"
    assert client.get("/notes", params={"sort": "-body"}).status_code == 400
    assert client.get("/notes", params={"limit": 101}).status_code == 422


def test_login_is_rate_limited(client: TestClient) -> None:
    """Ten attempts a minute per client; the eleventh is a 429 with Retry-After."""
    codes = [
        client.post("/auth/login", json={"username": "nobody", "password": "guess"}).status_code
        for _ in range(10)
    ]
    assert codes == [401] * 10
    blocked = client.post("/auth/login", json={"username": "demo", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
