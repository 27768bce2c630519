"""The panels of dashboard_render.py other than time series: stat, bar gauge (and gauge),
table, state timeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from tests.integration.dashboard_format import (
    BORDER,
    CANVAS,
    MUTED,
    TEXT,
    clock,
    color,
    finite,
    min_step,
    time_ticks,
)
from tests.integration.dashboard_svg import (
    AXIS_H,
    TITLE_H,
    Box,
    Line,
    escape,
    field_overrides,
    fit,
    line_el,
    no_data,
    num,
    rect_el,
    reduced,
    shown_value,
    text_el,
)


def draw_stat(panel: Mapping[str, Any], lines: Sequence[Line], box: Box) -> list[str]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    options = panel.get("options", {})
    cells = [(line, reduced(panel, line)) for line in lines]
    area = Box(box.x + 8, box.y + TITLE_H, box.w - 16, box.h - TITLE_H - 6)
    if not cells:
        return [no_data(area)]
    out: list[str] = []
    width = area.w / len(cells)
    for i, (line, value) in enumerate(cells):
        cell = Box(area.x + i * width, area.y, width, area.h)
        text, shade = ("No data", MUTED) if value is None else shown_value(value, defaults)
        points = [(t, v) for t, v in line.samples if finite(v)]
        if options.get("graphMode") == "area" and len(points) > 1:
            spark = Box(cell.x, cell.y + cell.h * 0.55, cell.w, cell.h * 0.45)
            low, high = min(v for _, v in points), max(v for _, v in points)
            t0, t1 = points[0][0], points[-1][0]
            coords = " ".join(
                f"{num(spark.x + (t - t0) / max(t1 - t0, 1e-9) * spark.w)},"
                f"{num(spark.bottom - (v - low) / (high - low or 1) * spark.h * 0.9)}"
                for t, v in points)
            out.append(f'<polygon points="{coords} {num(spark.right)},{num(spark.bottom)} '
                       f'{num(spark.x)},{num(spark.bottom)}" fill="{shade}" fill-opacity="0.15"/>')
            out.append(f'<polyline points="{coords}" fill="none" stroke="{shade}" '
                       f'stroke-opacity="0.7" stroke-width="1"/>')
        top = cell.y
        if len(cells) > 1:
            out.append(text_el(cell.x + cell.w / 2, cell.y + 11, fit(line.name, cell.w, 11), 11,
                               TEXT, anchor="middle", extra=' class="name"'))
            top += 12
        size = min((cell.bottom - top) * 0.6, cell.w * 0.9 / (max(len(text), 1) * 0.6), 36.0)
        out.append(text_el(cell.x + cell.w / 2, (top + cell.bottom) / 2 + size * 0.35, text, size,
                           shade, anchor="middle", extra=' font-weight="500" class="value"'))
    return out


def draw_bargauge(panel: Mapping[str, Any], lines: Sequence[Line], box: Box) -> list[str]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    rows = [(line, reduced(panel, line)) for line in lines]
    area = Box(box.x + 8, box.y + TITLE_H, box.w - 16, box.h - TITLE_H - 8)
    if not rows:
        return [no_data(area)]
    values = [v for _, v in rows if v is not None]
    low = float(defaults.get("min", min([0.0, *values])))
    high = float(defaults.get("max", max([low + 1.0, *values])))
    row_h = min(area.h / len(rows), 40.0)
    name_w, value_w = area.w * 0.3, 80.0
    out: list[str] = []
    for i, (line, value) in enumerate(rows):
        y = area.y + i * row_h
        bar = Box(area.x + name_w, y + row_h * 0.2, area.w - name_w - value_w, row_h * 0.6)
        out.append(text_el(area.x, bar.y + bar.h / 2 + 4, fit(line.name, name_w - 6, 11), 11))
        out.append(rect_el(bar, "#22252b"))
        if value is None:
            out.append(text_el(bar.right + 6, bar.y + bar.h / 2 + 4, "No data", 11, MUTED))
            continue
        text, shade = shown_value(value, defaults)
        share = (min(max(value, low), high) - low) / (high - low or 1)
        out.append(rect_el(Box(bar.x, bar.y, bar.w * share, bar.h), shade, ' class="bar"'))
        out.append(text_el(bar.right + 6, bar.y + bar.h / 2 + 5, text, 13, shade,
                           extra=' class="value"'))
    return out


def table_rows(panel: Mapping[str, Any], lines: Sequence[Line]) -> tuple[list[str],
                                                                         list[dict[str, Any]]]:
    """Columns and rows of a table panel: a row per label set (targets merged on their labels),
    a `Value` column (`Value #<refId>` with several targets), then organize and sortBy."""
    refs = [str(t.get("refId", "A")) for t in panel.get("targets", [])]
    rows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for line in lines:
        key = tuple(sorted((k, v) for k, v in line.labels.items() if k != "__name__"))
        row = rows.setdefault(key, dict(key))
        row["Value" if len(refs) == 1 else f"Value #{line.ref}"] = reduced(panel, line)
    columns = sorted({k for key in rows for k, _ in key})
    columns += ["Value"] if len(refs) == 1 else [f"Value #{r}" for r in refs]
    table = list(rows.values())
    for step in panel.get("transformations", []):
        options = step.get("options", {})
        if step.get("id") == "organize":
            columns = [c for c in columns if not options.get("excludeByName", {}).get(c)]
            names = options.get("renameByName", {})
            table = [{names.get(k, k): v for k, v in row.items()} for row in table]
            columns = [names.get(c, c) for c in columns]
        elif step.get("id") == "sortBy":
            for rule in reversed(options.get("sort", [])):
                field = rule.get("field")
                present = [r for r in table if r.get(field) is not None]
                present.sort(key=itemgetter(field), reverse=bool(rule.get("desc")))
                table = present + [r for r in table if r.get(field) is None]
    return columns, table


def draw_table(panel: Mapping[str, Any], lines: Sequence[Line], box: Box) -> list[str]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    columns, rows = table_rows(panel, lines)
    area = Box(box.x + 8, box.y + TITLE_H, box.w - 16, box.h - TITLE_H - 8)
    width = area.w / max(len(columns), 1)
    out = [rect_el(Box(area.x, area.y, area.w, 22), "#22252b")]
    for i, column in enumerate(columns):
        out.append(text_el(area.x + i * width + 6, area.y + 15, fit(column, width - 8, 11), 11,
                           MUTED, extra=' font-weight="500"'))
    if not rows:
        return [*out, no_data(Box(area.x, area.y + 22, area.w, area.h - 22))]
    room = int((area.h - 22) / 22)
    for r, row in enumerate(rows[: room if len(rows) <= room else room - 1]):
        y = area.y + 22 + r * 22
        out.append(line_el(area.x, y + 22, area.right, y + 22, BORDER))
        for i, column in enumerate(columns):
            value, cell = row.get(column), Box(area.x + i * width, y, width, 22)
            props = {**defaults, **field_overrides(panel, column)}
            if isinstance(value, float):
                text, shade = shown_value(value, {"unit": "none", **props})
                if (props.get("custom.cellOptions") or {}).get("type") == "color-background":
                    out.append(rect_el(Box(cell.x + 1, cell.y + 1, cell.w - 2, cell.h - 2), shade,
                                       ' fill-opacity="0.85"'))
            else:
                text = "" if value is None else str(value)
            out.append(text_el(cell.x + 6, y + 15, fit(text, width - 8, 11), 11,
                               extra=' class="cell"'))
    if len(rows) > room:
        out.append(text_el(area.x + 6, area.bottom - 4, f"+{len(rows) - room + 1} more rows", 10,
                           MUTED))
    return out


def draw_state_timeline(panel: Mapping[str, Any], lines: Sequence[Line], box: Box, start: float,
                        end: float) -> list[str]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    entries = sorted((hit.get("index", 0), hit.get("text", key), color(hit.get("color")))
                     for mapping in defaults.get("mappings", []) if mapping.get("type") == "value"
                     for key, hit in mapping.get("options", {}).items())
    legend_h = 18 if entries else 0
    label_w = min(box.w * 0.3, max([len(line.name) for line in lines] + [4]) * 6.5 + 10)
    area = Box(box.x + 8 + label_w, box.y + TITLE_H, box.w - 16 - label_w,
               box.h - TITLE_H - AXIS_H - legend_h - 8)
    out: list[str] = []
    span = max(end - start, 1e-9)

    def x_of(t: float) -> float:
        return area.x + (min(max(t, start), end) - start) / span * area.w

    for moment in time_ticks(start, end, max(2, int(area.w / 90))):
        out.append(text_el(x_of(moment), area.bottom + 13, clock(moment), 10, MUTED, anchor="middle"))
    if not lines:
        out.append(no_data(area))
    row_h = area.h / max(len(lines), 1)
    bar_h = row_h * float(panel.get("options", {}).get("rowHeight", 0.9))
    for i, line in enumerate(lines):
        y = area.y + i * row_h + (row_h - bar_h) / 2
        out.append(text_el(box.x + 8, y + bar_h / 2 + 4, fit(line.name, label_w - 8, 11), 11))
        out.append(f'<g class="series" data-name="{escape(line.name)}">')
        points = [(t, v) for t, v in line.samples if finite(v)]
        step = min_step([t for t, _ in points]) or span
        i0 = 0
        while i0 < len(points):
            i1 = i0
            while i1 + 1 < len(points) and points[i1 + 1][1] == points[i0][1] and (
                    points[i1 + 1][0] - points[i1][0] <= 1.5 * step):
                i1 += 1
            t_end = points[i1 + 1][0] if i1 + 1 < len(points) else points[i1][0] + step
            text, shade = shown_value(points[i0][1], defaults)
            seg = Box(x_of(points[i0][0]), y, x_of(t_end) - x_of(points[i0][0]), bar_h)
            out.append(rect_el(seg, shade, ' fill-opacity="0.8" class="state"'))
            if seg.w > len(text) * 6.5 + 8:
                out.append(text_el(seg.x + 4, y + bar_h / 2 + 4, text, 11, CANVAS))
            i0 = i1 + 1
        out.append("</g>")
    x = area.x
    for _, text, shade in entries:
        out.append(rect_el(Box(x, area.bottom + AXIS_H + 6, 10, 10), shade))
        out.append(text_el(x + 14, area.bottom + AXIS_H + 15, text, 10, TEXT))
        x += len(text) * 6 + 30
    return out
