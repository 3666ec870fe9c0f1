"""``/livez`` (the process answers) and ``/readyz`` (every backend answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from dtpyfw.container import ServiceContainerInstance


def health_router(container: ServiceContainerInstance) -> APIRouter:
    """Liveness never touches a dependency; readiness pings every configured subsystem."""
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse

    router = APIRouter(tags=["health"])

    @router.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        report = await container.ahealth()
        checks: dict[str, Any] = {}
        for result in report.results:
            entry: dict[str, Any] = {"ok": result.ok, "latency_ms": round(result.latency_ms, 2)}
            if result.error is not None:
                # The kind of failure only: messages can carry hosts and internals.
                entry["error"] = result.error.split(":", 1)[0]
            checks[result.name] = entry
        body = {"status": "ok" if report.ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if report.ok else 503)

    return router
