// Usage: the account's report grouped by day, model, provider or key, as a chart and a table,
// and the same as CSV.
import { accountParam, api, query, session } from "../api.js";
import { barChart, daysBetween } from "../chart.js";
import { clear, el, field, table } from "../dom.js";
import { num, rub } from "../format.js";
import { t } from "../i18n.js";

const GROUPS = ["day", "model", "provider", "key"];

function isoDay(offsetDays) {
  return new Date(Date.now() + offsetDays * 86400000).toISOString().slice(0, 10);
}

export async function render(main, ctx) {
  main.append(el("h1", null, t("usage.title")));
  const group = el("select", { testid: "usage-group" }, GROUPS.map((g) => el("option", { value: g }, t(`group.${g}`))));
  const since = el("input", { type: "date", value: isoDay(-29), testid: "usage-since" });
  const until = el("input", { type: "date", value: isoDay(0), testid: "usage-until" });
  const account = el("input", { testid: "usage-account", value: session.account_id || "" });
  const csvNote = el("span");
  const csv = el("button", { type: "button", testid: "usage-csv", onclick: () => exportCsv() }, t("usage.csv"));
  const out = el("div");

  function params() {
    return {
      group_by: group.value,
      since: since.value ? `${since.value}T00:00:00Z` : "",
      until: until.value ? `${until.value}T23:59:59.999Z` : "",
      account_id: accountParam(ctx, account),
    };
  }

  // The API's CSV, saved as a file; an API that answers something else has no CSV export.
  async function exportCsv() {
    clear(csvNote);
    try {
      const resp = await fetch(`/v1/usage${query({ ...params(), format: "csv" })}`, { credentials: "same-origin" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      if (!(resp.headers.get("Content-Type") || "").startsWith("text/csv")) {
        csvNote.append(el("span", { class: "error", testid: "error" }, t("common.unavailable", t("usage.csv"))));
        return;
      }
      const link = el("a", { href: URL.createObjectURL(await resp.blob()), download: `usage-${params().group_by}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (err) {
      csvNote.append(ctx.errorBox(err));
    }
  }

  // Only the latest request draws: an earlier answer that arrives late is dropped.
  let latest = 0;

  async function refresh() {
    const mine = ++latest;
    clear(out);
    try {
      const reply = await api("GET", `/v1/usage${query(params())}`);
      if (mine !== latest) return;
      const g = group.value;
      const rows = [...reply.data].sort((a, b) => (g === "day" ? String(a.day).localeCompare(String(b.day)) : Number(b.cost) - Number(a.cost)));
      if (!rows.length) {
        out.append(el("p", { class: "muted" }, t("common.none")));
        return;
      }
      // By day, every day of the range has its bar (a day without traffic is a zero).
      const costs = new Map(rows.map((r) => [r[g] || "—", r.cost]));
      const labels = g === "day" && since.value && until.value ? daysBetween(since.value, until.value) : [...costs.keys()];
      out.append(el("section", { class: "card" }, el("h2", null, t("usage.chart", t(`group.${g}`))),
        barChart(labels.map((label) => ({ label, value: costs.get(label) || 0 })), { title: t("usage.chart", t(`group.${g}`)), format: rub, testid: "usage-chart" })));
      out.append(table([t(`group.${g}`), t("usage.requests"), t("usage.prompt"), t("usage.completion"), t("usage.cost")],
        rows.map((r) => [r[g] || "—", { text: num(r.requests), class: "num" }, { text: num(r.prompt_tokens), class: "num" },
          { text: num(r.completion_tokens), class: "num" }, { text: rub(r.cost), class: "num" }]), { testid: "usage-table" }));
    } catch (err) {
      if (mine === latest) out.append(ctx.errorBox(err));
    }
  }

  const filters = el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
    field(t("usage.groupBy"), group), field(t("usage.since"), since), field(t("usage.until"), until),
    session.role === "master" ? field(t("common.account"), account) : null,
    el("button", { type: "submit", testid: "usage-apply" }, t("common.apply")), csv, csvNote);
  group.addEventListener("change", refresh);
  main.append(filters, out);
  await refresh();
}
