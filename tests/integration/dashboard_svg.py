"""The building blocks of dashboard_render.py: the data it draws, SVG elements, Grafana's
legendFormat, field overrides and value display. Pure functions, the standard library only."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.integration.dashboard_format import (
    MUTED,
    PALETTE,
    TEXT,
    color,
    format_value,
    mapped,
    reduce,
    threshold_color,
)

Sample = tuple[float, float]
Series = tuple[Mapping[str, str], Sequence[Sample]]
# The series of each panel target, keyed by (panel id, target refId).
PanelData = Mapping[tuple[int, str], Sequence[Series]]

COLUMN, ROW, GAP, PAD, HEADER = 50, 30, 8, 16, 48
TITLE_H, AXIS_W, AXIS_H, LEGEND_ROW, CALC_W = 28, 60, 16, 14, 72
FONT = "Inter, Helvetica, Arial, sans-serif"


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass(frozen=True)
class Line:
    """One series of a panel: its display name (legendFormat applied), colour and samples."""

    name: str
    ref: str
    labels: Mapping[str, str]
    samples: Sequence[Sample]
    color: str


def series_from_prometheus(result: Sequence[Mapping[str, Any]]) -> list[Series]:
    """The `result` of a query_range (matrix) or query (vector) answer as series."""
    out: list[Series] = []
    for item in result:
        raw = item["values"] if "values" in item else [item["value"]] if "value" in item else []
        out.append((dict(item.get("metric", {})), [(float(t), float(v)) for t, v in raw]))
    return out


def escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def num(value: float) -> str:
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


def fit(text: str, width: float, size: float) -> str:
    """`text` cut (with an ellipsis) to about `width` px at font `size`."""
    most = max(1, int(width / (size * 0.6)))
    return text if len(text) <= most else text[: most - 1] + "…"


def text_el(x: float, y: float, text: str, size: float = 11, fill: str = TEXT, *,
            anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}" fill="{fill}"'
            f'{"" if anchor == "start" else f" text-anchor={chr(34)}{anchor}{chr(34)}"}'
            f'{extra}>{escape(text)}</text>')


def rect_el(box: Box, fill: str, extra: str = "") -> str:
    return (f'<rect x="{num(box.x)}" y="{num(box.y)}" width="{num(max(box.w, 0))}" '
            f'height="{num(max(box.h, 0))}" fill="{fill}"{extra}/>')


def line_el(x1: float, y1: float, x2: float, y2: float, stroke: str, *, extra: str = "") -> str:
    return (f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" '
            f'stroke="{stroke}"{extra}/>')


def legend_name(fmt: str, labels: Mapping[str, str]) -> str:
    """Grafana's legendFormat: `{{label}}` replaced by the series' label (empty if absent);
    without a format, the labels as `{a="b"}`."""
    if fmt:
        return re.sub(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{pairs}}}" if pairs else labels.get("__name__", "Value")


def field_overrides(panel: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The override properties (id -> value) that apply to the field or series `name`."""
    props: dict[str, Any] = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        option = str(matcher.get("options", ""))
        if (matcher.get("id") == "byName" and option == name) or (
                matcher.get("id") == "byRegexp" and re.search(option, name)):
            props.update({p["id"]: p.get("value") for p in override.get("properties", [])})
    return props


def panel_lines(panel: Mapping[str, Any], data: PanelData) -> list[Line]:
    """The panel's series in target order (each target's sorted by labels), coloured by the
    classic palette in that order unless an override fixes a colour."""
    lines: list[Line] = []
    for target in panel.get("targets", []):
        ref = str(target.get("refId", "A"))
        found = data.get((int(panel.get("id", 0)), ref), [])
        for labels, samples in sorted(found, key=lambda s: sorted(s[0].items())):
            name = legend_name(str(target.get("legendFormat") or ""), labels)
            fixed = field_overrides(panel, name).get("color") or {}
            shade = color(fixed.get("fixedColor"), PALETTE[len(lines) % len(PALETTE)])
            lines.append(Line(name, ref, labels, list(samples), shade))
    return lines


def no_data(box: Box) -> str:
    return text_el(box.x + box.w / 2, box.y + box.h / 2 + 4, "No data", 13, MUTED, anchor="middle")


def reduced(panel: Mapping[str, Any], line: Line) -> float | None:
    calcs = panel.get("options", {}).get("reduceOptions", {}).get("calcs") or ["lastNotNull"]
    return reduce([v for _, v in line.samples], str(calcs[0]))


def shown_value(value: float, defaults: Mapping[str, Any]) -> tuple[str, str]:
    """(text, colour) of a value: a mapping's, else the unit's text and the threshold colour."""
    text, shade = mapped(value, defaults.get("mappings", []))
    return (text or format_value(value, defaults.get("unit"), defaults.get("decimals")),
            shade or threshold_color(value, defaults.get("thresholds")))

