// Numbers, money, times and decimal strings, in the page's language.
import { lang, t } from "./i18n.js";

function locale() {
  return lang() === "ru" ? "ru-RU" : "en-US";
}

/** RUB with kopecks, and the exact sub-kopeck digits when there are any (up to 6). */
export function rub(value) {
  const n = Number(value || 0);
  return `${new Intl.NumberFormat(locale(), { minimumFractionDigits: 2, maximumFractionDigits: 6 }).format(n)} ₽`;
}

export function num(value, digits = 3) {
  if (value === null || value === undefined || value === "") return "—";
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(Number(value));
}

export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(locale());
}

export function yesNo(value) {
  return value ? t("common.yes") : t("common.no");
}

/** A decimal string times 10^6, exactly (prices per token -> per million tokens). */
export function perMillion(text) {
  if (text === null || text === undefined || text === "") return "—";
  let s = String(text);
  let sign = "";
  if (s.startsWith("-")) { sign = "-"; s = s.slice(1); }
  if (/e/i.test(s)) return num(Number(text) * 1e6);
  const [whole, frac = ""] = s.split(".");
  const padded = frac.padEnd(6, "0");
  const intPart = (whole + padded.slice(0, 6)).replace(/^0+(?=\d)/, "");
  const rest = padded.slice(6).replace(/0+$/, "");
  const [sep, group] = lang() === "ru" ? [",", "\u00a0"] : [".", ","];
  return sign + intPart.replace(/\B(?=(\d{3})+$)/g, group) + (rest ? sep + rest : "");
}

/** Today's date (UTC) as YYYY-MM-DD, as the usage report's days are. */
export function utcDay(date) {
  return (date || new Date()).toISOString().slice(0, 10);
}
