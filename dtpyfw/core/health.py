"""Health results shared by every subsystem's ping and the container's report."""

from __future__ import annotations

__all__ = ["HealthReport", "HealthResult"]

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HealthResult:
    """The outcome of one subsystem's ping."""

    name: str
    ok: bool
    latency_ms: float
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view for ``/readyz`` and ``dtpyfw health``."""
        out: dict[str, object] = {"ok": self.ok, "latency_ms": round(self.latency_ms, 2)}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every ping's result; ``ok`` only when all of them passed."""

    results: tuple[HealthResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every subsystem answered in time."""
        return all(r.ok for r in self.results)

    def as_dict(self) -> dict[str, object]:
        """``{"ok": bool, "checks": {name: {...}}}``."""
        return {"ok": self.ok, "checks": {r.name: r.as_dict() for r in self.results}}
