"""Server-side SVG chart geometry for the CX dashboard (no JavaScript, no chart library).

The template ``cx_charts.html`` draws these: every chart carries a ``<title>`` and a ``<desc>``
summarising it in words, every bar and point its value as text, and a data table follows each
chart, so screen readers and text browsers get the numbers too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from feedback.kpis import MIN_TREND_N, DayPoint

Fmt = Callable[[float], str]


def pct(v: float) -> str:
    return f"{v * 100:.0f}%"


def num(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def one_dp(v: float) -> str:
    return f"{v:.1f}"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str          # "12 Nov: 64% (n 14)"
    partial: bool = False   # drawn hollow and not joined to the line


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass
class LineChart:
    id: str
    title: str
    desc: str
    width: int
    height: int
    segments: list[list[Point]]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    rows: list[tuple[str, str]]           # (day, value text) for the data table
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)   # left, top, right, bottom
    empty: bool = False

    @property
    def polylines(self) -> list[str]:
        return [" ".join(f"{p.x:.1f},{p.y:.1f}" for p in seg) for seg in self.segments if len(seg) > 1]

    @property
    def points(self) -> list[Point]:
        return [p for seg in self.segments for p in seg]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    category: str
    value_text: str
    tone: str = ""


@dataclass
class BarChart:
    id: str
    title: str
    desc: str
    width: int
    height: int
    bars: list[Bar]
    baseline: float
    rows: list[tuple[str, str]] = field(default_factory=list)
    empty: bool = False


def line_chart(chart_id: str, title: str, series: Sequence[DayPoint], *, fmt: Fmt = num,
               y_max: float | None = None, y_min: float = 0.0, width: int = 360, height: int = 150,
               per: str = "day", count: bool = False) -> LineChart:
    """A trend line. ``per`` is the bin ("day" or "week", keyed by its Monday); a point resting on
    fewer than ``MIN_TREND_N`` responses (``suppressed``) is not drawn, a ``partial`` one (today, or a
    week the window cuts) is drawn hollow and apart; the data table gives every value with its n."""
    left, top, right, bottom = 44.0, 10.0, width - 22.0, height - 24.0
    shown = [p for p in series if p.value is not None and not p.suppressed]
    values = [float(p.value) for p in shown if p.value is not None]
    hi = y_max if y_max is not None else (max(values) if values else 1.0)
    if hi <= y_min:
        hi = y_min + 1.0
    n = len(series)

    def x_of(i: int) -> float:
        return left + (right - left) * (i / (n - 1) if n > 1 else 0.5)

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * (min(max(v, y_min), hi) - y_min) / (hi - y_min)

    def when(d: date) -> str:
        return f"week of {d:%d %b}" if per == "week" else f"{d:%d %b}"

    def size(p: DayPoint) -> str:
        return "" if count else f" (n {p.n})"

    segments: list[list[Point]] = []
    current: list[Point] = []
    for i, p in enumerate(series):
        if p.value is None or p.suppressed or p.partial:
            if current:
                segments.append(current)
            current = []
            if p.value is not None and not p.suppressed:
                segments.append([Point(x_of(i), y_of(p.value), f"{when(p.day)}: {fmt(p.value)}{size(p)}, partial",
                                       partial=True)])
            continue
        current.append(Point(x_of(i), y_of(p.value), f"{when(p.day)}: {fmt(p.value)}{size(p)}"))
    if current:
        segments.append(current)
    y_ticks = [Tick(y_of(v), fmt(v)) for v in (y_min, (y_min + hi) / 2, hi)]
    x_idx = sorted({0, (n - 1) // 2, n - 1}) if n else []
    x_ticks = [Tick(x_of(i), f"{series[i].day:%d %b}") for i in x_idx]
    unit = "weekly (weeks from Monday)" if per == "week" else "daily"
    hidden = sum(1 for p in series if p.suppressed)
    if values:
        first, last = series[0].day, series[-1].day
        latest = next(float(p.value) for p in reversed(shown) if p.value is not None)
        desc = (f"{title}, {unit} from {first:%d %b %Y} to {last:%d %b %Y}: lowest {fmt(min(values))}, "
                f"highest {fmt(max(values))}, latest {fmt(latest)}; {len(values)} of {n} points drawn.")
    else:
        desc = f"{title}: no data to draw in this period."
    if hidden:
        desc += f" {hidden} not drawn: fewer than {MIN_TREND_N} responses."
    if any(p.partial for p in series):
        desc += " Hollow points are partial (the day or week is not over, or the period cuts it)."

    def cell(p: DayPoint) -> str:
        if p.value is None:
            return "–"
        text = f"{fmt(p.value)}{size(p)}"
        if p.suppressed:
            text = f"– (n {p.n}: too few to show)"
        return text + (" · partial" if p.partial else "")

    rows = [(f"week of {p.day:%d %b %Y}" if per == "week" else f"{p.day:%d %b %Y}", cell(p)) for p in series]
    return LineChart(chart_id, title, desc, width, height, segments, y_ticks, x_ticks, rows,
                     (left, top, right, bottom), empty=not values)


def bar_chart(chart_id: str, title: str, categories: Sequence[tuple[str, float]], *, fmt: Fmt = num,
              tones: Sequence[str] | None = None, width: int = 360, height: int = 150,
              unit: str = "") -> BarChart:
    left, top, right, bottom = 8.0, 18.0, width - 8.0, height - 22.0
    n = max(len(categories), 1)
    slot = (right - left) / n
    hi = max((v for _, v in categories), default=0.0) or 1.0
    bars = []
    for i, (cat, v) in enumerate(categories):
        h = (bottom - top) * v / hi
        bars.append(Bar(left + slot * i + slot * 0.15, bottom - h, slot * 0.7, h, cat, fmt(v),
                        tones[i] if tones else ""))
    total = sum(v for _, v in categories)
    if total:
        parts = ", ".join(f"{c}: {fmt(v)}{unit}" for c, v in categories)
        desc = f"{title}. {parts}."
    else:
        desc = f"{title}: no data in this period."
    rows = [(c, fmt(v) + unit) for c, v in categories]
    return BarChart(chart_id, title, desc, width, height, bars, bottom, rows, empty=not total)
