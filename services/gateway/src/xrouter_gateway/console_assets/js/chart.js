// Bar charts as SVG, drawn here (no library): one bar per point, a <title> on each for its exact
// value, the largest value on the axis.
import { svg } from "./dom.js";

const W = 720;
const H = 220;
const PAD = { top: 16, right: 12, bottom: 34, left: 72 };

/** points: [{label, value}]; format: value -> text. Returns an <svg> element. */
export function barChart(points, { title, format = String, testid } = {}) {
  const max = Math.max(0, ...points.map((p) => Number(p.value) || 0));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = points.length ? plotW / points.length : plotW;
  const bar = Math.min(48, Math.max(1, step * 0.7));
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title,
    "data-testid": testid,
  });
  root.append(svg("title", null, title));
  root.append(svg("line", { x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH, class: "axis" }));
  root.append(svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH, class: "axis" }));
  root.append(svg("text", { x: PAD.left - 6, y: PAD.top + 4, class: "tick", "text-anchor": "end" }, format(max)));
  root.append(svg("text", { x: PAD.left - 6, y: PAD.top + plotH, class: "tick", "text-anchor": "end" }, format(0)));
  const every = Math.max(1, Math.ceil(points.length / 10));
  points.forEach((p, i) => {
    const value = Number(p.value) || 0;
    const h = max > 0 ? (value / max) * plotH : 0;
    const x = PAD.left + i * step + (step - bar) / 2;
    const rect = svg("rect", { x: x.toFixed(1), y: (PAD.top + plotH - h).toFixed(1), width: bar.toFixed(1), height: h.toFixed(1), class: "bar" });
    rect.append(svg("title", null, `${p.label}: ${format(value)}`));
    root.append(rect);
    if (i % every === 0) {
      root.append(svg("text", { x: (x + bar / 2).toFixed(1), y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, shorten(p.label)));
    }
  });
  return root;
}

function shorten(label) {
  const text = String(label);
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return text.slice(5);
  return text.length > 14 ? `${text.slice(0, 13)}…` : text;
}

/** The last `days` UTC days, oldest first, as YYYY-MM-DD. */
export function lastDays(days, now) {
  const out = [];
  const end = now || new Date();
  for (let i = days - 1; i >= 0; i -= 1) {
    out.push(new Date(end.getTime() - i * 86400000).toISOString().slice(0, 10));
  }
  return out;
}

/** Every UTC day from `first` to `last` (YYYY-MM-DD, both included), at most 366. */
export function daysBetween(first, last) {
  const out = [];
  const end = Date.parse(`${last}T00:00:00Z`);
  for (let at = Date.parse(`${first}T00:00:00Z`); at <= end && out.length < 366; at += 86400000) {
    out.push(new Date(at).toISOString().slice(0, 10));
  }
  return out;
}
