"""tests/integration/dashboard_render.py: the SVG pictures of the dashboards (`make dashboards`).
Exact geometry and text for a small dashboard; every shipped dashboard renders from synthetic
series with one panel group per panel, each showing a line, a value, a bar, a cell or a state."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.integration.dashboard_format import format_value, value_axis
from tests.integration.dashboard_panels import table_rows
from tests.integration.dashboard_render import render_dashboard
from tests.integration.dashboard_svg import (
    Line,
    PanelData,
    Series,
    escape,
    legend_name,
    series_from_prometheus,
)
from tests.unit.test_observability_files import load_dashboards

SVG = "{http://www.w3.org/2000/svg}"
START, END = 1000.0, 1060.0


def small_dashboard() -> dict[str, Any]:
    return {"uid": "small", "title": "Small board", "panels": [
        {"id": 1, "type": "timeseries", "title": "Latency <p95> & 'more'",
         "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
         "fieldConfig": {"defaults": {"unit": "s", "min": 0, "max": 4,
                                      "custom": {"lineWidth": 1}}},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "calcs": []}},
         "targets": [{"refId": "A", "expr": "x", "legendFormat": "{{provider}} p95"}]},
        {"id": 2, "type": "stat", "title": "Failure ratio",
         "gridPos": {"x": 12, "y": 0, "w": 6, "h": 4},
         "fieldConfig": {"defaults": {"unit": "percentunit", "decimals": 1, "thresholds": {
             "mode": "absolute", "steps": [{"color": "green", "value": None},
                                           {"color": "red", "value": 0.1}]}}},
         "options": {"graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"]}},
         "targets": [{"refId": "A", "expr": "y", "legendFormat": "failed"}]}]}


def small_data() -> dict[tuple[int, str], list[Series]]:
    return {(1, "A"): [({"provider": "openai"}, [(1000.0, 1.0), (1030.0, 2.0), (1060.0, 4.0)])],
            (2, "A"): [({}, [(1000.0, 0.05), (1030.0, 0.125), (1060.0, math.nan)])]}


def panels_of(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]


def test_the_polyline_of_a_known_series_has_exact_points() -> None:
    """The panel at gridPos (0, 0, 12x8): 592x232 px at (16, 48); the plot starts 68 px in and
    28 px down, 512 px wide, and 160 px high above the time axis (16 px), the margin (8 px) and
    one legend row (14 + 6 px). y from 0 to 4 (the panel's min and max), t from 1000 to 1060."""
    svg = render_dashboard(small_dashboard(), small_data(), START, END)
    series = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "series"]
    assert len(series) == 1
    (polyline,) = series[0].iter(f"{SVG}polyline")
    assert polyline.get("points") == "84,196 340,156 596,76"
    assert polyline.get("stroke") == "#73bf69"
    assert ET.fromstring(svg).get("width") == "1224"


def test_the_stat_shows_the_last_value_in_its_unit_and_threshold_colour() -> None:
    svg = render_dashboard(small_dashboard(), small_data(), START, END)
    stat = panels_of(svg)[1]
    values = [t for t in stat.iter(f"{SVG}text") if t.get("class") == "value"]
    # lastNotNull skips the trailing NaN: 0.125 with one decimal, red from 0.1.
    assert [(v.text, v.get("fill")) for v in values] == [("12.5%", "#f2495c")]
    # A single value carries no series name.
    assert not [t for t in stat.iter(f"{SVG}text") if t.get("class") == "name"]


def test_the_legend_substitutes_labels_and_text_is_escaped() -> None:
    svg = render_dashboard(small_dashboard(), small_data(), START, END)
    legend = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "legend"]
    assert legend == ["openai p95"]
    assert ">Latency &lt;p95&gt; &amp; &apos;more&apos;</text>" in svg
    assert "<p95>" not in svg
    titles = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "title"]
    assert titles == ["Latency <p95> & 'more'", "Failure ratio"]


def test_the_output_is_deterministic_and_one_group_per_panel() -> None:
    first = render_dashboard(small_dashboard(), small_data(), START, END)
    assert first == render_dashboard(small_dashboard(), small_data(), START, END)
    assert [g.get("id") for g in panels_of(first)] == ["panel-1", "panel-2"]


def test_a_panel_without_series_says_no_data() -> None:
    svg = render_dashboard(small_dashboard(), {}, START, END)
    assert svg.count(">No data</text>") == 2
    assert "<polyline" not in svg


def test_stacked_series_sit_on_each_other() -> None:
    board = small_dashboard()
    board["panels"] = board["panels"][:1]
    board["panels"][0]["fieldConfig"]["defaults"]["custom"]["stacking"] = {"mode": "normal"}
    board["panels"][0]["options"]["legend"]["showLegend"] = False
    data: PanelData = {(1, "A"): [({"provider": "a"}, [(1000.0, 1.0), (1060.0, 1.0)]),
                                  ({"provider": "b"}, [(1000.0, 2.0), (1060.0, 3.0)])]}
    svg = render_dashboard(board, data, START, END)
    points = [p.get("points") for p in ET.fromstring(svg).iter(f"{SVG}polyline")]
    # Without a legend the plot is 180 px high (236 + 20 - 76): 45 px per unit.
    assert points == ["84,211 596,211", "84,121 596,76"]


@pytest.mark.parametrize(("value", "unit", "decimals", "text"), [
    (0.125, "percentunit", None, "12.5%"),
    (0.98765, "percentunit", 2, "98.77%"),
    (0.12, "s", None, "120 ms"),
    (90.0, "s", None, "1.5 min"),
    (0.0, "s", None, "0 s"),
    (250.0, "ms", None, "250 ms"),
    (1500.0, "reqps", None, "1.5 K req/s"),
    (0.25, "ops", None, "0.25 ops/s"),
    (2048.0, "bytes", None, "2 KiB"),
    (3.5, "currencyRUB", 2, "3.50 ₽"),
    (12.0, "currencyUSD", None, "$12"),
    (1234567.0, "short", None, "1.23 Mil"),
    (42.0, None, None, "42"),
    (7.0, "suffix: tok/s", None, "7 tok/s"),
])
def test_units_are_formatted_like_grafana(value: float, unit: str | None, decimals: int | None,
                                          text: str) -> None:
    assert format_value(value, unit, decimals) == text


def test_axis_ranges_round_to_ticks() -> None:
    assert value_axis(0.0, 3.2, 0.0, None) == (0.0, 4.0, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert value_axis(0.0, 0.0, 0.0, None) == (0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert value_axis(None, None, None, 1.0)[1] == 1.0


def test_legend_formats_and_prometheus_results() -> None:
    labels = {"model": "m<1>", "provider": "p"}
    assert legend_name("{{model}} via {{ provider }}", labels) == "m<1> via p"
    assert legend_name("{{missing}}x", labels) == "x"
    assert legend_name("", {"__name__": "up", "job": "x"}) == 'up{job="x"}'
    assert escape("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&apos;"
    matrix = [{"metric": {"a": "1"}, "values": [[1000, "1.5"], [1001, "NaN"]]}]
    series = series_from_prometheus(matrix)
    assert series[0][0] == {"a": "1"} and series[0][1][0] == (1000.0, 1.5)
    assert math.isnan(series[0][1][1][1])
    assert series_from_prometheus([{"metric": {}, "value": [5, "2"]}]) == [({}, [(5.0, 2.0)])]


def test_a_table_merges_targets_renames_and_sorts() -> None:
    """Token Usage's "Top models in time range": tokens (A) and cost (B) per model."""
    panel = next(p for p in load_dashboards()["token-usage.json"]["panels"] if p["type"] == "table")
    lines = [Line("", ref, {"model": model}, [(1.0, value)], "#fff")
             for ref, model, value in (("A", "small", 10.0), ("A", "big", 500.0),
                                       ("B", "small", 0.5), ("B", "big", 9.0))]
    columns, rows = table_rows(panel, lines)
    assert columns == ["Model", "Tokens", "Cost"]
    assert rows == [{"Model": "big", "Tokens": 500.0, "Cost": 9.0},
                    {"Model": "small", "Tokens": 10.0, "Cost": 0.5}]


def synthetic(dashboard: dict[str, Any]) -> dict[tuple[int, str], list[Series]]:
    """One series per target, carrying every label its legendFormat names: a wave over
    [START, END] every 5 s (a single sample at END for instant targets), in [0, 3]."""
    data: dict[tuple[int, str], list[Series]] = {}
    for panel in dashboard["panels"]:
        for i, target in enumerate(panel["targets"]):
            names = re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat") or "")
            labels = {name: f"{name}-{i}" for name in names} or {"deployment": "test/echo@fake"}
            moments = [END] if target.get("instant") else [START + 5 * k for k in range(13)]
            data[(panel["id"], target["refId"])] = [
                (labels, [(t, round(1.5 + 1.5 * math.sin(t / 7), 3)) for t in moments])]
    return data


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_every_shipped_dashboard_renders(name: str) -> None:
    dashboard = load_dashboards()[name]
    svg = render_dashboard(dashboard, synthetic(dashboard), START, END)
    groups = panels_of(svg)
    assert [g.get("id") for g in groups] == [f"panel-{p['id']}" for p in dashboard["panels"]]
    for group, panel in zip(groups, dashboard["panels"], strict=True):
        assert group.get("data-type") == panel["type"]
        drawn = {e.get("class") for e in group.iter()} | {
            "polyline" for _ in group.iter(f"{SVG}polyline")}
        expected = {"timeseries": "polyline", "stat": "value", "bargauge": "bar",
                    "table": "cell", "state-timeline": "state"}[panel["type"]]
        assert expected in drawn, f"{name} / {panel['title']}: nothing drawn"
        assert "No data" not in "".join(group.itertext()), f"{name} / {panel['title']}"
