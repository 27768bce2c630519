"""Numbers, units, colours and axis ticks the way Grafana shows them, for dashboard_render.py.
Pure functions of their arguments, the standard library only."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Grafana's dark theme: the canvas, a panel, its border, text and secondary text, grid lines.
CANVAS, PANEL, BORDER, TEXT, MUTED, GRID = (
    "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e", "#2a2d33")
# The first colours of Grafana's "palette-classic", in order.
PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17")
NAMED = {"green": "#73bf69", "yellow": "#fade2a", "orange": "#ff9830", "red": "#f2495c",
         "blue": "#5794f2", "purple": "#b877d9", "text": TEXT, "transparent": "none"}
CURRENCY_PREFIX = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
CURRENCY_SUFFIX = {"RUB": "₽"}


def color(name: str | None, default: str = TEXT) -> str:
    """A Grafana colour (a name or `#rrggbb`) as an SVG colour."""
    if not name:
        return default
    if name.startswith("#"):
        return name.lower()
    return NAMED.get(name.split("-")[-1], default)


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def _fixed(value: float, decimals: int | None) -> str:
    """`decimals` as asked, or three significant digits without trailing zeros."""
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if value == 0:
        return "0"
    places = max(0, min(6, 2 - math.floor(math.log10(abs(value)))))
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _scaled(value: float, decimals: int | None, steps: Sequence[tuple[float, str]]) -> str:
    """`value` divided by the largest step it reaches, with that step's suffix."""
    for size, suffix in reversed(steps):
        if abs(value) >= size:
            return f"{_fixed(value / size, decimals)}{suffix}"
    return _fixed(value, decimals)


SHORT = ((1.0, ""), (1e3, " K"), (1e6, " Mil"), (1e9, " Bil"), (1e12, " Tri"))
BYTES = ((1.0, " B"), (1024.0, " KiB"), (1024.0**2, " MiB"), (1024.0**3, " GiB"),
         (1024.0**4, " TiB"))
SECONDS = ((1e-9, " ns"), (1e-6, " µs"), (1e-3, " ms"), (1.0, " s"), (60.0, " min"),
           (3600.0, " hour"), (86400.0, " day"), (604800.0, " week"))


def _short(value: float, decimals: int | None) -> str:
    return _scaled(value, decimals, SHORT)


def _with_suffix(unit: str, value: float, decimals: int | None) -> str | None:
    """Units that are a short number with something after or before it."""
    rates = {"reqps": " req/s", "ops": " ops/s", "rps": " rd/s", "wps": " wr/s"}
    if unit in rates:
        return _short(value, decimals) + rates[unit]
    if unit.startswith("suffix:"):
        return _short(value, decimals) + " " + unit.removeprefix("suffix:").strip()
    if unit.startswith("prefix:"):
        return unit.removeprefix("prefix:").strip() + _short(value, decimals)
    if unit.startswith("currency"):
        code = unit.removeprefix("currency")
        if code in CURRENCY_PREFIX:
            return CURRENCY_PREFIX[code] + _short(value, decimals)
        return f"{_short(value, decimals)} {CURRENCY_SUFFIX.get(code, code)}"
    return None


def format_value(value: float, unit: str | None, decimals: int | None = None) -> str:
    """A number in a Grafana unit: `percentunit` 0.125 -> `12.5%`, `s` 0.12 -> `120 ms`,
    `reqps` 1500 -> `1.5 K req/s`, `bytes` 2048 -> `2 KiB`, `currencyRUB` 3.5 -> `3.5 ₽`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    unit = unit or "short"
    if unit == "percentunit":
        return f"{_fixed(value * 100, decimals)}%"
    if unit == "percent":
        return f"{_fixed(value, decimals)}%"
    if unit in ("s", "ms", "µs", "ns"):
        value *= {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}[unit]
        return "0 s" if value == 0 else _scaled(value, decimals, SECONDS)
    if unit in ("bytes", "decbytes"):
        return _scaled(value, decimals, BYTES)
    if unit == "none":
        return _fixed(value, decimals)
    return _with_suffix(unit, value, decimals) or _short(value, decimals)


def nice_step(span: float, count: int) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about `count` ticks."""
    raw = span / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if raw <= m * magnitude * 1.0000001)


def value_axis(low: float | None, high: float | None, fixed_min: float | None,
               fixed_max: float | None, count: int = 4) -> tuple[float, float, list[float]]:
    """The y range and its ticks: the panel's min/max when set, else the data's widened to a
    tick; a flat or empty series gets a range of 1 around its value."""
    lo = fixed_min if fixed_min is not None else (low if low is not None else 0.0)
    hi = fixed_max if fixed_max is not None else (high if high is not None else 1.0)
    if hi <= lo:
        if fixed_max is None:
            hi = lo + (abs(lo) if lo else 1.0)
        else:
            lo = hi - (abs(hi) if hi else 1.0)
    step = nice_step(hi - lo, count)
    if fixed_min is None:
        lo = math.floor(lo / step + 1e-9) * step
    if fixed_max is None:
        hi = math.ceil(hi / step - 1e-9) * step
    first = math.ceil(lo / step - 1e-9) * step
    ticks = [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]
    return lo, hi, ticks


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400)


def time_ticks(start: float, end: float, count: int) -> list[float]:
    """Round UTC moments between `start` and `end`, at most about `count` of them."""
    span = max(end - start, 1.0)
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    first = math.ceil(start / step) * step
    return [float(first + i * step) for i in range(int((end - first) // step) + 1)]


def min_step(times: Sequence[float]) -> float:
    """The shortest positive distance between successive moments (0 for fewer than two)."""
    return min((b - a for a, b in itertools.pairwise(times) if b > a), default=0.0)


def clock(moment: float, seconds: bool = True) -> str:
    return time.strftime("%H:%M:%S" if seconds else "%H:%M", time.gmtime(moment))


def day_and_clock(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def reduce(values: Sequence[float], calc: str) -> float | None:
    """Grafana's reducers over the finite values: lastNotNull, last, mean, max, min, sum..."""
    good = [v for v in values if finite(v)]
    if calc == "last":
        return values[-1] if values else None
    if not good:
        return None
    if calc == "mean":
        return sum(good) / len(good)
    if calc in {"first", "firstNotNull"}:
        return good[0]
    reducers: dict[str, Callable[[list[float]], float]] = {"max": max, "min": min, "sum": sum}
    return float(reducers[calc](good)) if calc in reducers else good[-1]


def threshold_color(value: float, thresholds: Mapping[str, Any] | None) -> str:
    """The colour of the highest threshold step `value` reaches (absolute mode)."""
    chosen = None
    for step in (thresholds or {}).get("steps", []):
        if step.get("value") is None or value >= float(step["value"]):
            chosen = step.get("color")
    return color(chosen, PALETTE[0])


def mapped(value: float, mappings: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """(text, colour) of the first value or range mapping `value` matches, else (None, None)."""
    key = str(int(value)) if finite(value) and value == int(value) else repr(value)
    for mapping in mappings:
        options = mapping.get("options", {})
        if mapping.get("type") == "value" and key in options:
            hit = options[key]
            return hit.get("text"), color(hit["color"]) if hit.get("color") else None
        if mapping.get("type") == "range":
            low, high = options.get("from"), options.get("to")
            if (low is None or value >= low) and (high is None or value <= high):
                hit = options.get("result", {})
                return hit.get("text"), color(hit["color"]) if hit.get("color") else None
    return None, None
