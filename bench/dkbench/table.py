"""The result table: one row per metric with its peer, the ratio, the target and the verdict."""

from dataclasses import dataclass, field, asdict
from typing import Callable


@dataclass
class Value:
    number: float
    unit: str

    def __str__(self) -> str:
        n = self.number
        if self.unit == "bytes":
            return f"{n / 1e6:.2f} MB"
        if self.unit == "%":
            return f"{n:.3f} %"
        if self.unit in ("ns", "ns/write", "ns/run", "ms", "CPU ns/write"):
            return f"{n:.0f} {self.unit}" if n >= 100 else f"{n:.1f} {self.unit}"
        if self.unit == "events":
            return f"{n:,.0f} events"
        if self.unit == "MiB":
            return f"{n:.1f} MiB"
        return f"{n:g} {self.unit}".strip()


@dataclass
class Row:
    metric: str
    subject: Value | None
    baseline: Value | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = "report"
    # Decides met/missed from (subject, ratio); None when the row only reports.
    check: Callable[[float, float | None], bool] | None = field(default=None, repr=False)
    note: str = ""
    optional: bool = False  # may be n/a without failing the smoke run (e.g. no image built)

    @property
    def verdict(self) -> str:
        if self.subject is None:
            return "n/a"
        if self.check is None:
            return "-"
        if self.ratio is None and self.baseline is not None:
            return "n/a"
        return "met" if self.check(self.subject.number, self.ratio) else "MISSED"

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("check")
        d["verdict"] = self.verdict
        return d


def error_row(metric: str, error: Exception, optional: bool = False) -> Row:
    return Row(metric, None, note=f"error: {error}", optional=optional)


def render(rows: list[Row]) -> str:
    header = ["metric", "subject", "baseline / peer", "ratio", "target", "met?"]
    lines = [header]
    for r in rows:
        base = "-" if r.baseline is None else f"{r.baseline} ({r.baseline_label})" if r.baseline_label else str(r.baseline)
        if r.baseline is None and r.baseline_label:
            base = r.baseline_label
        lines.append([
            r.metric,
            "n/a" if r.subject is None else str(r.subject),
            base,
            "-" if r.ratio is None else f"{r.ratio:.3f}x",
            r.target,
            r.verdict,
        ])
    out = ["| " + " | ".join(cells) + " |" for cells in lines]
    out.insert(1, "|" + "|".join("---" for _ in header) + "|")
    notes = [f"- {r.metric}: {r.note}" for r in rows if r.note]
    if notes:
        out += ["", "Notes:"] + notes
    return "\n".join(out)
