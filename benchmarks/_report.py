"""Shared benchmark output: a readable table, then one JSON line (the project rule).

Every ``benchmarks/bench_*.py`` ends with :func:`report`, which prints the table and,
as the very last line of standard output, ``{"benchmark": ..., "results": [...]}``.
``ratio`` always reads "above 1 means ours is faster": our rate / baseline rate for
throughput, baseline time / our time for durations.
"""

from __future__ import annotations

__all__ = ["Result", "format_rows", "json_line", "print_table", "report"]

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class Result:
    """One compared case: ``"<operation> vs <baseline>"``."""

    case: str
    ours: float
    baseline: float
    unit: str
    ratio: float

    @classmethod
    def rate(cls, case: str, ours: float, baseline: float, unit: str = "calls/s") -> Result:
        """Throughput (higher is better): ratio = ours / baseline."""
        return cls(case, ours, baseline, unit, _divide(ours, baseline))

    @classmethod
    def duration(cls, case: str, ours: float, baseline: float, unit: str = "ms") -> Result:
        """A time (lower is better): ratio = baseline / ours, so above 1 is still faster."""
        return cls(case, ours, baseline, unit, _divide(baseline, ours))

    def as_json(self) -> dict[str, Any]:
        """The JSON object of this result, numbers rounded to readable precision."""
        return {
            "case": self.case,
            "ours": _significant(self.ours),
            "baseline": _significant(self.baseline),
            "unit": self.unit,
            "ratio": round(self.ratio, 3),
        }


def format_rows(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    body = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in body) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(body[0]), rule, *(line(row) for row in body[1:])])


def print_table(
    results: Sequence[Result],
    *,
    title: str | None = None,
    notes: Iterable[str] = (),
    file: TextIO | None = None,
) -> None:
    """Print ``case, ours, baseline, unit, ratio`` as an aligned table, then notes."""
    out = file or sys.stdout
    if title:
        print(title, file=out)
    rows = [
        (r.case, _human(r.ours), _human(r.baseline), r.unit, f"{r.ratio:.2f}x") for r in results
    ]
    print(format_rows(("case", "ours", "baseline", "unit", "ratio"), rows), file=out)
    for note in notes:
        print(f"  * {note}", file=out)


def json_line(benchmark: str, results: Sequence[Result]) -> str:
    """The one-line JSON summary: ``{"benchmark": ..., "results": [...]}``."""
    payload = {"benchmark": benchmark, "results": [r.as_json() for r in results]}
    return json.dumps(payload, separators=(", ", ": "))


def report(
    benchmark: str,
    results: Sequence[Result],
    *,
    title: str | None = None,
    notes: Iterable[str] = (),
) -> None:
    """Print the table, then the JSON line as the last line of standard output."""
    print_table(results, title=title, notes=notes)
    print(json_line(benchmark, results))
    sys.stdout.flush()


def _divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


def _significant(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _human(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"
