// Providers: live status from /v1/providers/status, refreshed every 10 seconds.
import { api } from "../api.js";
import { clear, el, table } from "../dom.js";
import { num, time } from "../format.js";
import { t } from "../i18n.js";

const EVERY_MS = 10000;
const STATUS_CLASS = { operational: "good", degraded: "warn", down: "bad", unknown: "muted" };

export async function render(main, ctx) {
  main.append(el("h1", null, t("providers.title")));
  const out = el("div");
  async function refresh() {
    try {
      const reply = await api("GET", "/v1/providers/status");
      const rows = Object.entries(reply.data).sort(([a], [b]) => a.localeCompare(b)).map(([name, p]) => [
        name, { text: t(`status.${p.status}`), class: `status ${STATUS_CLASS[p.status] || ""}` },
        { text: num(p.latency, 1), class: "num" },
        { text: p.success_rate === null || p.success_rate === undefined ? "—" : `${num(p.success_rate * 100)} %`, class: "num" },
        time(p.last_updated)]);
      clear(out).append(table([t("providers.name"), t("providers.status"), t("providers.latency"), t("providers.success"), t("providers.updated")], rows, { testid: "providers-table" }));
    } catch (err) {
      clear(out).append(ctx.errorBox(err));
    }
  }
  main.append(el("button", { type: "button", onclick: refresh }, t("common.refresh")), out);
  await refresh();
  const timer = setInterval(refresh, EVERY_MS);
  return () => clearInterval(timer);
}
