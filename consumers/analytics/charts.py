"""Bar charts as inline SVG, computed on the server (no JavaScript, no CDN)."""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # under the bar
    value: str  # above the bar / in the tooltip
    label_y: float
    value_y: float


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    baseline: float
    bars: list[Bar]
    title: str


def bar_chart(
    points: list[tuple[str, Decimal | int, str]],
    *,
    title: str,
    width: int = 720,
    height: int = 220,
) -> BarChart:
    """Scale ``(label, value, shown value)`` points into bars filling ``width`` x ``height``."""
    top, bottom = 18.0, 32.0  # room for values above and labels below
    baseline = height - bottom
    peak = max((float(value) for _, value, _ in points), default=0.0) or 1.0
    slot = width / max(len(points), 1)
    bar_width = min(max(slot * 0.7, 1.0), 64.0)
    bars = []
    for index, (label, value, shown) in enumerate(points):
        bar_height = (baseline - top) * float(value) / peak
        bars.append(
            Bar(
                x=round(index * slot + (slot - bar_width) / 2, 2),
                y=round(baseline - bar_height, 2),
                width=round(bar_width, 2),
                height=round(bar_height, 2),
                label=label,
                value=shown,
                label_y=baseline + 14,
                value_y=round(baseline - bar_height - 4, 2),
            )
        )
    return BarChart(width=width, height=height, baseline=baseline, bars=bars, title=title)
