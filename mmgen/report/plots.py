"""Line charts as inline SVG, written here (no plotting library): one chart per metric, one line per run."""
from __future__ import annotations

import html
import math

# colour-blind-safe line colours (Okabe-Ito), one per run
COLORS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")
WIDTH, HEIGHT = 330, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 26, 34  # margins around the plot area


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], xlabel: str = "step") -> str:
    """An ``<svg>`` chart of ``series`` (name -> [(x, y), ...]; non-finite points are left out), with
    axes, ticks and, for several series, a legend. A series of one point is drawn as a dot."""
    points = {name: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
              for name, pts in series.items()}
    points = {name: pts for name, pts in points.items() if pts}
    if not points:
        raise ValueError(f"chart {title!r} has no finite point to draw")
    x_lo, x_hi = _span([x for pts in points.values() for x, _ in pts])
    y_lo, y_hi = _span([y for pts in points.values() for _, y in pts])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x):
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y):
        return TOP + (y_hi - y) / (y_hi - y_lo) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
             f'{html.escape(title)}</text>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>']
    for y in ticks(y_lo, y_hi):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#e4e4e4"/>'
                     f'<text x="{LEFT - 4}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="10">{label(y)}</text>')
    for x in ticks(x_lo, x_hi):
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 13}" text-anchor="middle" font-size="10">'
                     f'{label(x)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle" font-size="11">'
                 f'{html.escape(xlabel)}</text>')
    for i, (name, pts) in enumerate(points.items()):
        color = COLORS[i % len(COLORS)]
        if len(pts) == 1:
            parts.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{color}"/>')
        else:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        if len(points) > 1:
            top = TOP + 12 + 13 * i
            parts.append(f'<line x1="{LEFT + 8}" x2="{LEFT + 24}" y1="{top - 4}" y2="{top - 4}" stroke="{color}" '
                         f'stroke-width="2"/><text x="{LEFT + 28}" y="{top}" font-size="10">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
