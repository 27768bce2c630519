"""A Grafana dashboard as an SVG image, drawn from the series Prometheus returned for its panels.

Not Grafana: a small, dependency-free approximation of its dark theme, used to put pictures of
the shipped dashboards (observability/grafana/dashboards/) in docs/operations.md. Panels sit
where their gridPos puts them (24 columns of COLUMN px, rows of ROW px). `timeseries`: axes,
one polyline per series (stacked when the panel stacks), fills, dashed threshold lines and a
legend with the panel's calcs; `stat`: the reduced value, big, in its unit, coloured by
mappings or thresholds, with a sparkline; `bargauge`/`gauge`: a bar per series; `table`: rows
of labels and values after the merge/organize/sortBy transformations; `state-timeline`: a band
of mapped states per series. The output depends only on the arguments.

Entry point: render_dashboard(). The other panel types are in dashboard_panels.py, the SVG
pieces and input types in dashboard_svg.py, units, colours and ticks in dashboard_format.py;
prometheus_support.render_dashboards() feeds it from a live Prometheus (`make dashboards`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.integration.dashboard_format import (
    BORDER,
    CANVAS,
    GRID,
    MUTED,
    PANEL,
    TEXT,
    clock,
    color,
    day_and_clock,
    finite,
    format_value,
    min_step,
    reduce,
    time_ticks,
    value_axis,
)
from tests.integration.dashboard_panels import draw_bargauge, draw_stat, draw_state_timeline, draw_table
from tests.integration.dashboard_svg import (
    AXIS_H,
    AXIS_W,
    CALC_W,
    COLUMN,
    FONT,
    GAP,
    HEADER,
    LEGEND_ROW,
    PAD,
    ROW,
    TITLE_H,
    Box,
    Line,
    PanelData,
    escape,
    fit,
    line_el,
    no_data,
    num,
    panel_lines,
    rect_el,
    text_el,
)

# ---- timeseries --------------------------------------------------------------------------------

Point = tuple[float, float, float]  # time, base of the band, top of the band


def stacked_points(lines: Sequence[Line], stacked: bool) -> list[list[Point]]:
    """Each series' samples as (t, base, top): base 0 unless stacking, where each series sits on
    the sum of those before it at that moment. Missing values stay NaN."""
    totals: dict[float, float] = {}
    out: list[list[Point]] = []
    for line in lines:
        points: list[Point] = []
        for t, v in line.samples:
            if not finite(v):
                points.append((t, float("nan"), float("nan")))
                continue
            base = totals.get(t, 0.0) if stacked else 0.0
            points.append((t, base, base + v))
            if stacked:
                totals[t] = base + v
        out.append(points)
    return out


def segments(points: Sequence[Point]) -> list[list[Point]]:
    """Runs of finite points; a missing value or a gap over 1.5 steps ends a run."""
    step = min_step([p[0] for p in points])
    runs: list[list[Point]] = []
    current: list[Point] = []
    for point in points:
        gap = bool(current) and step > 0 and point[0] - current[-1][0] > 1.5 * step
        if not finite(point[2]) or gap:
            if current:
                runs.append(current)
            current = []
        if finite(point[2]):
            current.append(point)
    return [*runs, current] if current else runs


def legend_rows(box: Box, lines: Sequence[Line], legend: Mapping[str, Any]) -> tuple[int, int]:
    """(series shown in the legend, legend rows) for a panel of this size: the plot keeps at
    least 40% of the panel's height (80 px), and a last row says how many series did not fit."""
    if not lines or legend.get("showLegend") is False:
        return 0, 0
    header = 1 if legend.get("displayMode") == "table" and legend.get("calcs") else 0
    plot = max(80.0, 0.4 * box.h)
    room = max(1 + header, int((box.h - TITLE_H - AXIS_H - 14 - plot) / LEGEND_ROW))
    if len(lines) <= room - header:
        return len(lines), header + len(lines)
    shown = max(1, room - header - 1)
    return shown, header + shown + 1


@dataclass(frozen=True)
class Legend:
    lines: Sequence[Line]
    shown: int
    options: Mapping[str, Any]
    unit: str | None
    decimals: int | None


def draw_legend(legend: Legend, top: float, box: Box) -> list[str]:
    """Bottom legend: a colour swatch and the name per series, and its calcs (mean, max...) in
    right-aligned columns under a header when the legend is a table."""
    calcs = [str(c) for c in legend.options.get("calcs", [])]
    columns = [box.right - 8 - (len(calcs) - 1 - i) * CALC_W for i in range(len(calcs))]
    out: list[str] = []
    y = top + 10
    if legend.options.get("displayMode") == "table" and calcs:
        out += [text_el(x, y, calc[:1].upper() + calc[1:], 10, MUTED, anchor="end")
                for calc, x in zip(calcs, columns, strict=True)]
        y += LEGEND_ROW
    name_w = (columns[0] - CALC_W + 8 if columns else box.right - 8) - (box.x + 26)
    for line in legend.lines[: legend.shown]:
        out.append(line_el(box.x + 8, y - 3.5, box.x + 20, y - 3.5, line.color,
                           extra=' stroke-width="3"'))
        out.append(text_el(box.x + 26, y, fit(line.name, name_w, 10), 10, extra=' class="legend"'))
        for calc, x in zip(calcs, columns, strict=True):
            result = reduce([v for _, v in line.samples], calc)
            text = "-" if result is None else format_value(result, legend.unit, legend.decimals)
            out.append(text_el(x, y, text, 10, anchor="end"))
        y += LEGEND_ROW
    if legend.shown < len(legend.lines):
        out.append(text_el(box.x + 26, y, f"+{len(legend.lines) - legend.shown} more", 10, MUTED))
    return out


@dataclass(frozen=True)
class Plot:
    """The plotting area and the ranges it maps: [start, end] across, [lo, hi] up."""

    box: Box
    start: float
    end: float
    lo: float
    hi: float

    def x(self, t: float) -> float:
        return self.box.x + (t - self.start) / max(self.end - self.start, 1e-9) * self.box.w

    def y(self, v: float) -> float:
        """Values outside [lo, hi] are drawn on the edge."""
        return self.box.bottom - (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo) * self.box.h


def draw_grid(plot: Plot, ticks: Sequence[float], unit: str | None) -> list[str]:
    box, out = plot.box, []
    for tick in ticks:
        out.append(line_el(box.x, plot.y(tick), box.right, plot.y(tick), GRID))
        out.append(text_el(box.x - 6, plot.y(tick) + 3.5, format_value(tick, unit), 10, MUTED,
                           anchor="end"))
    for moment in time_ticks(plot.start, plot.end, max(2, int(box.w / 90))):
        out.append(line_el(plot.x(moment), box.y, plot.x(moment), box.bottom, GRID))
        out.append(text_el(plot.x(moment), box.bottom + 13, clock(moment), 10, MUTED,
                           anchor="middle"))
    return out


def draw_series(plot: Plot, line: Line, band: Sequence[Point], custom: Mapping[str, Any]) -> list[str]:
    """A `series` group: per run of points a fill down to its base (when the panel fills) and a
    polyline (a dot for a lone point)."""
    opacity = min(float(custom.get("fillOpacity", 0)), 35.0) / 100
    out = [f'<g class="series" data-name="{escape(line.name)}">']
    for run in segments(band):
        tops = [(num(plot.x(t)), num(plot.y(top))) for t, _, top in run]
        joined = " ".join(f"{x},{y}" for x, y in tops)
        if opacity > 0 and len(run) > 1:
            bases = " ".join(f"{num(plot.x(t))},{num(plot.y(base))}" for t, base, _ in reversed(run))
            out.append(f'<polygon points="{joined} {bases}" fill="{line.color}" '
                       f'fill-opacity="{opacity:.2f}" stroke="none"/>')
        if len(run) == 1:
            out.append(f'<circle cx="{tops[0][0]}" cy="{tops[0][1]}" r="2" fill="{line.color}"/>')
        else:
            out.append(f'<polyline points="{joined}" fill="none" stroke="{line.color}" '
                       f'stroke-width="{custom.get("lineWidth", 1)}"/>')
    return [*out, "</g>"]


def draw_thresholds(plot: Plot, defaults: Mapping[str, Any]) -> list[str]:
    """Dashed lines at the threshold steps inside the y range, when the panel shows them."""
    style = str(defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off"))
    if "dashed" not in style and "line" not in style:
        return []
    dash = ' stroke-dasharray="6 4"' if "dashed" in style else ""
    return [line_el(plot.box.x, plot.y(float(step["value"])), plot.box.right,
                    plot.y(float(step["value"])), color(step.get("color")),
                    extra=f'{dash} class="threshold"')
            for step in defaults.get("thresholds", {}).get("steps", [])
            if step.get("value") is not None and plot.lo < float(step["value"]) <= plot.hi]


def draw_timeseries(panel: Mapping[str, Any], lines: Sequence[Line], box: Box, start: float,
                    end: float) -> list[str]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    options = panel.get("options", {}).get("legend", {})
    shown, rows = legend_rows(box, lines, options)
    area = Box(box.x + 8 + AXIS_W, box.y + TITLE_H, box.w - 20 - AXIS_W,
               box.h - TITLE_H - AXIS_H - 8 - (rows * LEGEND_ROW + 6 if rows else 0))
    bands = stacked_points(lines, custom.get("stacking", {}).get("mode", "none") != "none")
    values = [v for band in bands for p in band for v in p[1:] if finite(v)]
    lo, hi, ticks = value_axis(min(values, default=None), max(values, default=None),
                               defaults.get("min"), defaults.get("max"))
    plot = Plot(area, start, end, lo, hi)
    out = draw_grid(plot, ticks, defaults.get("unit"))
    for line, band in zip(lines, bands, strict=True):
        out += draw_series(plot, line, band, custom)
    out += draw_thresholds(plot, defaults)
    if not values:
        out.append(no_data(area))
    legend = Legend(lines, shown, options, defaults.get("unit"), defaults.get("decimals"))
    return out + draw_legend(legend, area.bottom + AXIS_H + 4, box)


# ---- the dashboard -----------------------------------------------------------------------------

def panel_box(panel: Mapping[str, Any]) -> Box:
    grid = panel.get("gridPos", {})
    return Box(PAD + grid.get("x", 0) * COLUMN, HEADER + grid.get("y", 0) * ROW,
               grid.get("w", 12) * COLUMN - GAP, grid.get("h", 8) * ROW - GAP)


def draw_panel(panel: Mapping[str, Any], data: PanelData, start: float, end: float) -> list[str]:
    box, kind = panel_box(panel), str(panel.get("type", ""))
    lines = panel_lines(panel, data)
    out = [f'<g class="panel" id="panel-{int(panel.get("id", 0))}" data-type="{escape(kind)}">',
           rect_el(box, PANEL, f' rx="3" stroke="{BORDER}"'),
           text_el(box.x + 8, box.y + 18, fit(str(panel.get("title", "")), box.w - 16, 13), 13,
                   TEXT, extra=' font-weight="500" class="title"')]
    if kind == "timeseries":
        out += draw_timeseries(panel, lines, box, start, end)
    elif kind == "stat":
        out += draw_stat(panel, lines, box)
    elif kind in ("bargauge", "gauge"):
        out += draw_bargauge(panel, lines, box)
    elif kind == "table":
        out += draw_table(panel, lines, box)
    elif kind == "state-timeline":
        out += draw_state_timeline(panel, lines, box, start, end)
    elif kind != "row":
        out.append(no_data(box))
    return [*out, "</g>"]


def render_dashboard(dashboard: Mapping[str, Any], data: PanelData, start: float,
                     end: float) -> str:
    """The dashboard as an SVG document; `data` holds each panel target's series and
    [`start`, `end`] (Unix seconds) is the time range every time axis shows."""
    panels = dashboard.get("panels", [])
    width = 2 * PAD + 24 * COLUMN - GAP
    rows = max([p.get("gridPos", {}).get("y", 0) + p.get("gridPos", {}).get("h", 8)
                for p in panels] or [0])
    height = HEADER + rows * ROW - GAP + PAD
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{FONT}">',
           f"<title>{escape(str(dashboard.get('title', '')))}</title>",
           rect_el(Box(0, 0, width, height), CANVAS),
           text_el(PAD, 30, str(dashboard.get("title", "")), 18, TEXT, extra=' font-weight="500"'),
           text_el(width - PAD, 30, f"{day_and_clock(start)} to {clock(end)} UTC", 11, MUTED, anchor="end")]
    for panel in panels:
        out += draw_panel(panel, data, start, end)
    out.append("</svg>")
    return "\n".join(out) + "\n"
