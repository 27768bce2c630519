// Building the page from data, always as text nodes: no HTML is ever parsed from a string.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "testid") {
      node.setAttribute("data-testid", value);
    } else if (name === "value" && "value" in node) {
      node.value = value;
    } else if (name === "checked" && "checked" in node) {
      node.checked = Boolean(value);
    } else {
      node.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** el("td", {class: "num"}, "text", otherNode): an element with attributes and text children. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element (charts). */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** A table: headers (text) and rows (arrays of cells: text, a Node, or {text, class}). */
export function table(headers, rows, attrs) {
  const head = el("tr", null, headers.map((h) => el("th", null, h)));
  const body = rows.map((cells) => el("tr", null, cells.map((cell) => {
    if (cell !== null && typeof cell === "object" && !(cell instanceof Node)) {
      return el("td", { class: cell.class, testid: cell.testid }, cell.text);
    }
    return el("td", null, cell);
  })));
  return el("table", { class: "grid", ...attrs }, el("thead", null, head), el("tbody", null, body));
}

/** A labelled form field. */
export function field(label, input) {
  return el("label", { class: "field" }, el("span", null, label), input);
}
